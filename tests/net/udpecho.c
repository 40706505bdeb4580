/* A UDP echo server for the published-UDP-port test (busybox has no UDP server applet).
 * Built static by the test: udpecho PORT; replies "echo:" + datagram to each sender. */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

int main(int argc, char **argv) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
    if (argc < 2 || s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) < 0) return 1;
    for (;;) {
        char buf[1500] = "echo:";
        struct sockaddr_in peer;
        socklen_t len = sizeof peer;
        ssize_t n = recvfrom(s, buf + 5, sizeof buf - 5, 0, (struct sockaddr *)&peer, &len);
        if (n >= 0) sendto(s, buf, (size_t)n + 5, 0, (struct sockaddr *)&peer, len);
    }
}
