/* A keep-alive HTTP/1.1 responder for the published-port benchmark: busybox httpd
 * closes every connection, so it cannot show the per-request cost of a kept-alive one.
 * httpka PORT: one process per connection, "ok\n" to every request on it. */
#include <arpa/inet.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char REPLY[] =
    "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\nok\n";

static void serve(int c) {
    char buf[8192];
    size_t have = 0;
    for (;;) {
        ssize_t n = read(c, buf + have, sizeof buf - 1 - have);
        if (n <= 0) return;
        have += (size_t)n;
        buf[have] = 0;
        char *end;
        while ((end = strstr(buf, "\r\n\r\n")) != NULL) {
            if (write(c, REPLY, sizeof REPLY - 1) < 0) return;
            size_t used = (size_t)(end + 4 - buf);
            memmove(buf, buf + used, have - used + 1);
            have -= used;
        }
        if (have == sizeof buf - 1) return; /* a header larger than the buffer: give up */
    }
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    signal(SIGCHLD, SIG_IGN);
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
    if (bind(s, (struct sockaddr *)&a, sizeof a) < 0 || listen(s, 128) < 0) return 1;
    for (;;) {
        int c = accept(s, NULL, NULL);
        if (c < 0) continue;
        if (fork() == 0) { close(s); serve(c); _exit(0); }
        close(c);
    }
}
