"""Image verbs: images, pull, push, rmi, tag, history, save, load, import, commit, prune."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from typing import IO, Any, TextIO

from runtime.cli.base import (
    Cli,
    CliError,
    add_format,
    confirmed,
    deleted_image_lines,
    error_message,
    filters_from,
    inspect_each,
    print_reclaimed,
    render_rows,
    short_id,
)

IMAGES_TABLE = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
IMAGES_DIGESTS = (
    "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
)
IMAGES_HEADERS = {
    "Repository": "REPOSITORY",
    "Tag": "TAG",
    "Digest": "DIGEST",
    "ID": "IMAGE ID",
    "CreatedSince": "CREATED",
    "CreatedAt": "CREATED AT",
    "Size": "SIZE",
    "Containers": "CONTAINERS",
    "SharedSize": "SHARED SIZE",
    "UniqueSize": "UNIQUE SIZE",
    "VirtualSize": "VIRTUAL SIZE",
}
HISTORY_TABLE = "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
HISTORY_HEADERS = {
    "ID": "IMAGE",
    "CreatedSince": "CREATED",
    "CreatedAt": "CREATED AT",
    "CreatedBy": "CREATED BY",
    "Size": "SIZE",
    "Comment": "COMMENT",
}


def split_ref(ref: str) -> tuple[str, str | None]:
    """ "repo[:tag][@digest]" → (repo, tag or digest or None); a port is not a tag."""
    if "@" in ref:
        repo, _, digest = ref.partition("@")
        return repo, digest
    name, sep, tag = ref.rpartition(":")
    if sep and "/" not in tag:
        return name, tag
    return ref, None


def canonical(ref: str) -> str:
    """docker.io/library/busybox:latest for "busybox" (what docker pull prints last)."""
    repo, tag = split_ref(ref)
    first, sep, _ = repo.partition("/")
    if not (sep and ("." in first or ":" in first or first == "localhost")):
        repo = "docker.io/" + (repo if sep else "library/" + repo)
    joiner = "@" if tag and tag.startswith("sha256:") else ":"
    return f"{repo}{joiner}{tag or 'latest'}"


def configure(verb: str, p: argparse.ArgumentParser) -> None:
    {
        "images": _images_flags,
        "image-inspect": _inspect_flags,
        "history": _history_flags,
        "pull": _pull_flags,
        "push": _push_flags,
        "rmi": _rmi_flags,
        "tag": _tag_flags,
        "save": _save_flags,
        "load": _load_flags,
        "import": _import_flags,
        "commit": _commit_flags,
        "image-prune": _prune_flags,
    }[verb](p)


# --- listing and inspecting ------------------------------------------------------------


def _images_flags(p: argparse.ArgumentParser) -> None:
    a = p.add_argument
    a(
        "-a",
        "--all",
        action="store_true",
        help="Show all images (default hides intermediate images)",
    )
    a("-q", "--quiet", action="store_true", help="Only show image IDs")
    a(
        "-f",
        "--filter",
        action="append",
        default=[],
        help="Filter output based on conditions provided",
    )
    a("--digests", action="store_true", help="Show digests")
    a("--no-trunc", action="store_true", help="Don't truncate output")
    add_format(p)
    a("repository", nargs="?", metavar="REPOSITORY[:TAG]")
    p.set_defaults(func=cmd_images)


def image_rows(
    img: dict[str, Any], trunc: bool = True, now: float | None = None
) -> list[dict[str, Any]]:
    """One row per tag (docker's image ls), "<none>" for untagged images."""
    import time

    from runtime.api.units import human_size, time_ago

    created = float(img.get("Created") or 0)
    digests = [d for d in img.get("RepoDigests") or [] if "@" in d]
    tags = [t for t in img.get("RepoTags") or [] if t != "<none>:<none>"]
    pairs = (
        [split_ref(t) for t in tags]
        or [(d.partition("@")[0], None) for d in digests[:1]]
        or [("<none>", None)]
    )
    rows = []
    for repo, tag in pairs:
        digest = next((d.partition("@")[2] for d in digests if d.startswith(repo + "@")), "<none>")
        rows.append(
            {
                "ID": short_id(str(img.get("Id", "")), trunc),
                "Repository": repo,
                "Tag": tag or "<none>",
                "Digest": digest,
                "CreatedSince": time_ago(created, now),
                "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S %z %Z", time.localtime(created)),
                "Size": human_size(float(img.get("Size") or 0), 3),
                "Containers": "N/A" if img.get("Containers", -1) == -1 else str(img["Containers"]),
                "SharedSize": "N/A"
                if img.get("SharedSize", -1) == -1
                else human_size(img["SharedSize"], 3),
                "UniqueSize": human_size(
                    float(img.get("Size") or 0) - max(0, img.get("SharedSize") or 0), 3
                ),
                "VirtualSize": human_size(float(img.get("VirtualSize") or img.get("Size") or 0), 3),
            }
        )
    return rows


def cmd_images(cli: Cli, args: argparse.Namespace) -> int:
    filters = filters_from(args.filter)
    if args.repository:
        filters.setdefault("reference", []).append(args.repository)
    items = cli.client.images(all=args.all, filters=filters, digests=args.digests)
    items.sort(key=lambda i: -float(i.get("Created") or 0))
    if args.quiet:
        seen: list[str] = []
        for img in items:
            ident = short_id(str(img["Id"]), not args.no_trunc)
            if ident not in seen:
                seen.append(ident)
                cli.print(ident)
        return 0
    rows = [row for img in items for row in image_rows(img, not args.no_trunc)]
    render_rows(
        cli, args.format, IMAGES_DIGESTS if args.digests else IMAGES_TABLE, rows, IMAGES_HEADERS
    )
    return 0


def _inspect_flags(p: argparse.ArgumentParser) -> None:
    add_format(p, short=True)
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.set_defaults(func=cmd_image_inspect)


def cmd_image_inspect(cli: Cli, args: argparse.Namespace) -> int:
    return inspect_each(cli, args.images, cli.client.inspect_image, args.format)


def _history_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-H", "--human", default="true", help="Print sizes and dates in human readable format"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="Only show image IDs")
    p.add_argument("--no-trunc", action="store_true", help="Don't truncate output")
    add_format(p)
    p.add_argument("image", metavar="IMAGE")
    p.set_defaults(func=cmd_history)


def cmd_history(cli: Cli, args: argparse.Namespace) -> int:
    from runtime.api.units import human_size, time_ago

    trunc = not args.no_trunc
    rows = []
    for h in cli.client.image_history(args.image):
        ident = str(h.get("Id") or "")
        created_by = str(h.get("CreatedBy") or "").replace("\t", " ")
        if trunc and len(created_by) > 45:
            created_by = created_by[:44] + "…"
        rows.append(
            {
                "ID": "<missing>" if ident in ("", "<missing>") else short_id(ident, trunc),
                "CreatedSince": time_ago(float(h.get("Created") or 0)),
                "CreatedAt": str(h.get("Created")),
                "CreatedBy": created_by,
                "Size": human_size(float(h.get("Size") or 0), 3),
                "Comment": str(h.get("Comment") or ""),
            }
        )
    if args.quiet:
        for row in rows:
            cli.print(row["ID"])
        return 0
    render_rows(cli, args.format, HISTORY_TABLE, rows, HISTORY_HEADERS)
    return 0


# --- pull / push ---------------------------------------------------------------------


def _pull_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-a", "--all-tags", action="store_true", help="Download all tagged images in the repository"
    )
    p.add_argument(
        "--platform", default="", help="Set platform if server is multi-platform capable"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress verbose output")
    p.add_argument("image", metavar="NAME[:TAG|@DIGEST]")
    p.set_defaults(func=cmd_pull)


def pull_image(
    cli: Cli, image: str, platform: str = "", quiet: bool = False, out: TextIO | None = None
) -> None:
    """Pull with docker's progress display (to stderr during ``run``)."""
    from runtime.cli.auth import auth_for, registry_of
    from runtime.cli.progress import display
    from runtime.cli.stdio import is_tty

    out = out or cli.out
    repo, tag = split_ref(image)
    stream = cli.client.pull(repo, tag or "latest", platform or None, auth_for(registry_of(repo)))
    if quiet:
        for _ in stream:
            pass
        return
    display(stream, out, is_tty(out))


def cmd_pull(cli: Cli, args: argparse.Namespace) -> int:
    if split_ref(args.image)[1] is None and not args.all_tags and not args.quiet:
        cli.print("Using default tag: latest")
    pull_image(cli, args.image, args.platform, args.quiet)
    cli.print(canonical(args.image))
    return 0


def _push_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-a", "--all-tags", action="store_true", help="Push all tags of an image to the repository"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress verbose output")
    p.add_argument("--platform", default="", help=argparse.SUPPRESS)
    p.add_argument("image", metavar="NAME[:TAG]")
    p.set_defaults(func=cmd_push)


def cmd_push(cli: Cli, args: argparse.Namespace) -> int:
    from runtime.cli.auth import auth_for, registry_of
    from runtime.cli.progress import display
    from runtime.cli.stdio import is_tty

    repo, tag = split_ref(args.image)
    if tag is None and not args.all_tags:
        cli.print("Using default tag: latest")
        tag = "latest"
    stream = cli.client.push(repo, tag, auth_for(registry_of(repo)))
    if args.quiet:
        for _ in stream:
            pass
        cli.print(args.image)
        return 0
    display(stream, cli.out, is_tty(cli.out))
    return 0


# --- rmi / tag ---------------------------------------------------------------------------


def _rmi_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--force", action="store_true", help="Force removal of the image")
    p.add_argument("--no-prune", action="store_true", help="Do not delete untagged parents")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.set_defaults(func=cmd_rmi)


def cmd_rmi(cli: Cli, args: argparse.Namespace) -> int:
    from runtime.api.errors import CoveError

    failed = False
    for name in args.images:
        try:
            for item in cli.client.remove_image(name, args.force, args.no_prune):
                for key, value in item.items():
                    cli.print(f"{key}: {value}")
        except CoveError as e:
            cli.warn(error_message(e))
            failed = True
    return 1 if failed else 0


def _tag_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="SOURCE_IMAGE[:TAG]")
    p.add_argument("target", metavar="TARGET_IMAGE[:TAG]")
    p.set_defaults(func=cmd_tag)


def cmd_tag(cli: Cli, args: argparse.Namespace) -> int:
    repo, tag = split_ref(args.target)
    cli.client.tag_image(args.source, repo, tag or "latest")
    return 0


# --- save / load / import / commit ---------------------------------------------------


def _save_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", help="Write to a file, instead of STDOUT")
    p.add_argument("--platform", default="", help=argparse.SUPPRESS)
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.set_defaults(func=cmd_save)


def cmd_save(cli: Cli, args: argparse.Namespace) -> int:
    from runtime.cli.stdio import is_tty

    if not args.output and is_tty(cli.out):
        raise CliError("cowardly refusing to save to a terminal. Use the -o flag or redirect")
    chunks = cli.client.save_images(list(args.images))
    if args.output:
        with open(args.output, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
        return 0
    for chunk in chunks:
        cli.out_binary.write(chunk)
    cli.out_binary.flush()
    return 0


def _load_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--input", help="Read from tar archive file, instead of STDIN")
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress the load output")
    p.add_argument("--platform", default="", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_load)


@contextlib.contextmanager
def _open_input(path: str | None, what: str) -> Iterator[IO[bytes]]:
    """The named file, or stdin for none or "-" (refused on a terminal); a file is closed
    afterwards, stdin left open."""
    from runtime.cli.stdio import is_tty

    if path and path != "-":
        try:
            # Not "with open" around the try: only open's own failure is worded "open PATH".
            src = open(path, "rb")  # noqa: SIM115
        except OSError as e:
            raise CliError(f"open {path}: {e.strerror or e}") from e
        with src:
            yield src
        return
    if is_tty(sys.stdin):
        raise CliError(f"requested load from stdin, but stdin is empty ({what})")
    yield sys.stdin.buffer


def cmd_load(cli: Cli, args: argparse.Namespace) -> int:
    from runtime.cli.progress import display
    from runtime.cli.stdio import is_tty

    quiet = args.quiet or not is_tty(cli.out)  # docker asks for quiet when not on a TTY
    with _open_input(args.input, "use -i to load from a file") as src:
        display(cli.client.load_images(src, quiet), cli.out, is_tty(cli.out) and not quiet)
    return 0


def _import_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-c",
        "--change",
        action="append",
        default=[],
        help="Apply Dockerfile instruction to the created image",
    )
    p.add_argument("-m", "--message", help="Set commit message for imported image")
    p.add_argument(
        "--platform", default="", help="Set platform if server is multi-platform capable"
    )
    p.add_argument("file", metavar="file|URL|-")
    p.add_argument("repository", nargs="?", metavar="REPOSITORY[:TAG]")
    p.set_defaults(func=cmd_import)


def cmd_import(cli: Cli, args: argparse.Namespace) -> int:
    if "://" in args.file:
        raise CliError("importing from a URL is not supported; download the file first")
    repo, tag = split_ref(args.repository) if args.repository else (None, None)
    with _open_input(args.file, "use a file name or -") as src:
        for msg in cli.client.import_image(
            src,
            repo,
            tag,
            changes=args.change or None,
            message=args.message,
            platform=args.platform or None,
        ):
            if msg.get("status"):
                cli.print(msg["status"])
    return 0


def _commit_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-a", "--author", help='Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")'
    )
    p.add_argument(
        "-c",
        "--change",
        action="append",
        default=[],
        help="Apply Dockerfile instruction to the created image",
    )
    p.add_argument("-m", "--message", help="Commit message")
    p.add_argument("-p", "--pause", default="true", help="Pause container during commit")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("repository", nargs="?", metavar="REPOSITORY[:TAG]")
    p.set_defaults(func=cmd_commit)


def cmd_commit(cli: Cli, args: argparse.Namespace) -> int:
    repo, tag = split_ref(args.repository) if args.repository else (None, None)
    pause = str(args.pause).lower() not in ("false", "0", "no")
    result = cli.client.commit(
        args.container,
        repo,
        tag,
        comment=args.message,
        author=args.author,
        pause=pause,
        changes=args.change or None,
    )
    cli.print(result.get("Id", ""))
    return 0


def _prune_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-a", "--all", action="store_true", help="Remove all unused images, not just dangling ones"
    )
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    p.add_argument("--filter", action="append", default=[], help="Provide filter values")
    p.set_defaults(func=cmd_image_prune)


def cmd_image_prune(cli: Cli, args: argparse.Namespace) -> int:
    warning = (
        "WARNING! This will remove all images without at least one container associated to them."
        if args.all
        else "WARNING! This will remove all dangling images."
    )
    if not confirmed(cli, args.force, warning):
        return 0
    filters = filters_from(args.filter)
    filters.setdefault("dangling", ["false" if args.all else "true"])
    report = cli.client.prune_images(filters)
    print_reclaimed(
        cli, "Deleted Images", deleted_image_lines(report), report.get("SpaceReclaimed")
    )
    return 0
