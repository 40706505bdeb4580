"""The classic builder: runs a parsed Dockerfile stage by stage and streams docker's messages.

Output follows moby's classic builder line for line (``Step N/M : ...``,
`` ---> Using cache``, `` ---> Running in <id>``, `` ---> <id>``,
``Successfully built``/``tagged``) because clients parse it: docker-py finds
the image ID only in ``Successfully built <id>``. Moby commits every
metadata step (ENV, LABEL, CMD, WORKDIR, ...) through a container too, so
those steps print ``Running in`` and the removal line as well; here they are
committed directly and the container ID printed is a fresh random one.
Clients of API < 1.44 get moby 20.10-24's removal line ("Removing
intermediate container <id>"), newer ones moby 25+'s (" ---> Removed
intermediate container <id>"). Only the stages the target
needs are built. Tags are applied at the very end, so a failed build leaves
no tagged half-image; its untagged steps stay as cache, as docker's do.
"""

from __future__ import annotations

import secrets
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runtime.api import reference
from runtime.api.errors import CoveError, InvalidArgument
from runtime.build import instructions as ins
from runtime.build import metadata as md
from runtime.build import run as runstep
from runtime.build.cache import BuildCache, CacheFrom, step_key
from runtime.build.context import Context
from runtime.build.dockerfile import parse as parse_lines
from runtime.build.fs import LayerTree
from runtime.build.layers import layer_dirs, metadata_image, upper_image
from runtime.build.options import PROXY_ARGS, Options, builtin_args, resolve_auth
from runtime.build.shell import expand, expand_words
from runtime.build.sources import CopyStep, plan_copy
from runtime.engine import userns
from runtime.images.store import Image

if TYPE_CHECKING:
    from runtime.engine.engine import Engine

Out = Generator[str, None, None]


@dataclass
class StageState:
    image: Image | None
    section: dict[str, Any]
    args: dict[str, str] = field(default_factory=dict)
    cmd_set: bool = False
    maintainer: str = ""  # MAINTAINER: the author of this stage's later commits

    @property
    def shell(self) -> list[str]:
        return list(self.section.get("Shell") or md.DEFAULT_SHELL)

    def env(self) -> dict[str, str]:
        """Substitution environment: build args, overridden by ENV (docker's precedence)."""
        return {**self.args, **md.env_map(self.section)}


class StepFailed(CoveError):
    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


def _familiar(tag: str) -> str:
    return reference.parse(tag, default_tag=True).familiar()


def short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


class Builder:
    def __init__(self, engine: Engine, options: Options, context: Context,
                 parsed: ins.Parsed, cache: BuildCache) -> None:
        self.engine = engine
        self.store = engine.images
        self.opts = options
        self.ctx = context
        self.parsed = parsed
        self.cache = cache
        self.escape = parsed.escape
        self.used_args: set[str] = set()
        self.global_args: dict[str, str] = {}
        self.results: dict[int, Image | None] = {}
        self.step = 0
        self.total = 0
        # moby's image cache: with --cache-from (even when none of its images exist)
        # only steps found in those images' chains or histories count as cached.
        self.cache_from = CacheFrom(self.store, options.cache_from) if options.cache_from \
            else None

    # -- the whole build --
    def run(self) -> Iterator[dict[str, Any]]:
        """JSON messages for the client; errors end the stream in band."""
        try:
            final = yield from self._messages(self._build())
        except StepFailed as e:
            detail: dict[str, Any] = {"message": e.message}
            if e.code is not None:
                detail["code"] = e.code
            yield {"errorDetail": detail, "error": e.message}
            return
        except CoveError as e:
            yield {"errorDetail": {"message": e.message}, "error": e.message}
            return
        yield from self._finish(final)

    def _messages(self, out: Generator[str, None, Image]) -> Generator[dict[str, Any], None,
                                                                         Image]:
        while True:
            try:
                text = next(out)
            except StopIteration as stop:
                result: Image = stop.value
                return result
            if not self.opts.quiet:
                yield {"stream": text}

    def _finish(self, image: Image) -> Iterator[dict[str, Any]]:
        unused = sorted(k for k in self.opts.build_args
                        if k not in self.used_args and k not in PROXY_ARGS)
        if unused and not self.opts.quiet:
            yield {"stream": f"[Warning] One or more build-args [{' '.join(unused)}] were not "
                             "consumed\n"}
        yield {"aux": {"ID": image.id}}
        if self.opts.quiet:
            yield {"stream": f"{image.id}\n"}
        else:
            yield {"stream": f"Successfully built {short(image.id)}\n"}
        for tag in self.opts.tags:
            self.store.tag(image.id, tag)
            if not self.opts.quiet:
                yield {"stream": f"Successfully tagged {_familiar(tag)}\n"}

    def _build(self) -> Generator[str, None, Image]:
        self._global_args()
        target = self._target_index()
        needed = self._needed(target)
        self.total = sum(1 + len(self.parsed.stages[i].instructions) for i in needed)
        if self.opts.labels:
            self.total += 1
        image: Image | None = None
        for index in needed:
            image = yield from self._stage(self.parsed.stages[index], last=index == target)
            self.results[index] = image
        if image is None:
            raise InvalidArgument("No image was generated. Is your Dockerfile empty?")
        return image

    # -- stages --
    def _global_args(self) -> None:
        env = builtin_args()
        for arg in self.parsed.global_args:
            for name, default in arg.pairs:
                value = self._arg_value(name, default, env)
                if value is not None:
                    env[name] = value
                    self.global_args[name] = value
        self.global_env = env

    def _arg_value(self, name: str, default: str | None, env: dict[str, str]) -> str | None:
        given = self.opts.build_args.get(name)
        if name in self.opts.build_args and given is not None:
            self.used_args.add(name)
            return given
        return expand(default, env, self.escape) if default is not None else None

    def _target_index(self) -> int:
        if not self.opts.target:
            return len(self.parsed.stages) - 1
        index = self.parsed.stage_index(self.opts.target)
        if index is None:
            raise InvalidArgument(
                f"failed to reach build target {self.opts.target} in Dockerfile")
        return index

    def _needed(self, target: int) -> list[int]:
        """The stages *target* depends on (FROM <stage>, COPY --from=<stage>), in file order."""
        needed: set[int] = set()
        todo = [target]
        while todo:
            index = todo.pop()
            if index in needed:
                continue
            needed.add(index)
            stage = self.parsed.stages[index]
            refs = [expand(stage.source.image, self.global_env, self.escape)]
            refs += [expand(i.source_stage, self.global_env, self.escape)
                     for i in stage.instructions if isinstance(i, ins.Copy) and i.source_stage]
            for ref in refs:
                dep = self.parsed.stage_index(ref)
                if dep is not None and dep < index:
                    todo.append(dep)
        return sorted(needed)

    def _say_step(self, node_text: str) -> str:
        self.step += 1
        return f"Step {self.step}/{self.total} : {node_text}\n"

    def _stage(self, stage: ins.Stage, last: bool) -> Generator[str, None, Image | None]:
        yield self._say_step(stage.source.node.original)
        base = yield from self._base(stage)
        section = dict((base.config.get("config") or {}) if base else {})
        state = StageState(base, section)
        yield f" ---> {short(base.id) if base else ''}\n"
        triggers = list(section.get("OnBuild") or [])
        if triggers:
            state.section["OnBuild"] = None  # triggers run once, in the direct child only
            yield f"# Executing {len(triggers)} build trigger{'s' if len(triggers) > 1 else ''}\n"
            for text in triggers:
                node = parse_lines(text).nodes[0]
                yield from self._dispatch(state, ins.instruction(node, self.escape), stage)
        for instr in stage.instructions:
            yield self._say_step(instr.node.original)
            yield from self._dispatch(state, instr, stage)
        if last and self.opts.labels:
            text = "LABEL " + " ".join(f'"{k}"="{v}"' for k, v in self.opts.labels.items())
            yield self._say_step(text)
            node = parse_lines(text).nodes[0]
            yield from self._dispatch(state, ins.instruction(node, self.escape), stage)
        return state.image

    def _base(self, stage: ins.Stage) -> Generator[str, None, Image | None]:
        name = expand(stage.source.image, self.global_env, self.escape)
        if not name:
            raise InvalidArgument("base name (" + stage.source.image + ") should not be blank")
        dep = self.parsed.stage_index(name)
        if dep is not None and dep < stage.index:
            return self.results[dep]
        if name.lower() == "scratch":
            return None
        image = yield from self._image(name)
        return image

    def _image(self, name: str) -> Generator[str, None, Image]:
        """A local image, pulled from its registry when missing (or always with ``--pull``)."""
        if self.opts.pull or not self.store.exists(name):
            try:
                yield from self._pull(name)
            except CoveError:
                if not self.store.exists(name):
                    raise
        return self.store.get(name)

    def _pull(self, name: str) -> Out:
        from runtime.images.registry.pull import pull_messages

        ref = reference.parse(name, default_tag=True)
        for msg in pull_messages(self.store, ref, resolve_auth(self.opts.registry_auths,
                                                                ref.domain)):
            status = msg.get("status") if isinstance(msg, dict) else None
            if status and "id" not in msg:
                yield f"{status}\n"

    # -- steps --
    def _dispatch(self, state: StageState, instr: ins.Instruction, stage: ins.Stage) -> Out:
        if isinstance(instr, ins.Run):
            yield from self._run(state, instr)
        elif isinstance(instr, ins.Copy):
            yield from self._copy(state, instr)
        elif isinstance(instr, ins.Arg):
            yield from self._arg(state, instr)
        elif isinstance(instr, ins.Value) and instr.node.keyword == "WORKDIR":
            yield from self._workdir(state, instr)
        else:
            yield from self._metadata(state, instr)

    def _x(self, state: StageState, text: str) -> str:
        return expand(text, state.env(), self.escape)

    def _xw(self, state: StageState, text: str) -> list[str]:
        return expand_words(text, state.env(), self.escape)

    def _metadata(self, state: StageState, instr: ins.Instruction) -> Out:
        section = dict(state.section)
        text = self._apply_metadata(state, section, instr)
        yield from self._commit(state, section, md.nop(state.shell, text), None, container=True)

    def _apply_metadata(self, state: StageState, section: dict[str, Any],
                        instr: ins.Instruction) -> str:
        keyword = instr.node.keyword
        if isinstance(instr, ins.KeyValues):
            if keyword == "ENV":
                return md.env(section, instr, lambda t: self._x(state, t))
            return md.label(section, instr, lambda t: self._x(state, t))
        if isinstance(instr, ins.CommandInstr):
            if keyword == "CMD":
                state.cmd_set = True
                return md.cmd(section, instr, state.shell)
            if keyword == "ENTRYPOINT":
                return md.entrypoint(section, instr, state.shell, state.cmd_set)
            return md.shell_instr(section, instr)
        if isinstance(instr, ins.Words):
            if keyword == "EXPOSE":
                return md.expose(section, instr, lambda t: self._xw(state, t))
            return md.volume(section, instr, lambda t: self._x(state, t))
        if isinstance(instr, ins.Value):
            value = self._x(state, instr.value)
            if keyword == "USER":
                return md.simple(section, "User", "USER", value)
            if keyword == "STOPSIGNAL":
                return md.simple(section, "StopSignal", "STOPSIGNAL", value)
            state.maintainer = value
            return f"MAINTAINER {value}"
        if isinstance(instr, ins.Healthcheck):
            return md.healthcheck(section, instr)
        if isinstance(instr, ins.OnBuild):
            return md.onbuild(section, instr)
        raise InvalidArgument(f"unsupported instruction {keyword}")  # pragma: no cover

    def _arg(self, state: StageState, instr: ins.Arg) -> Out:
        parts = []
        for name, default in instr.pairs:
            value = self._arg_value(name, default, state.env())
            if value is None and name in self.global_args:
                value = self.global_args[name]  # "ARG NAME" inherits the global value
            if value is not None:
                state.args[name] = value
            else:
                state.args.pop(name, None)
            if name in self.opts.build_args:
                self.used_args.add(name)
            parts.append(name if default is None else f"{name}={default}")
        yield from self._commit(state, dict(state.section), md.nop(state.shell,
                                "ARG " + " ".join(parts)), None, container=True)

    def _commit(self, state: StageState, section: dict[str, Any], created_by: str,
                make: Any, container: bool = False) -> Out:
        """Use the cache or produce the step's image (``make`` builds a layer; None: metadata).

        *container*: moby runs this step through a container (metadata steps, WORKDIR), so
        a step that is not cached prints its ``Running in`` and removal lines.
        """
        parent_id = state.image.id if state.image else ""
        key = step_key(parent_id, created_by, section)
        hit = None if self.opts.nocache else self._cached(state, key, created_by, section)
        if hit is not None:
            yield " ---> Using cache\n"
            image = hit
        else:
            cid = secrets.token_hex(32) if container else ""
            if cid:
                yield f" ---> Running in {cid[:12]}\n"
            if make is None:
                image = metadata_image(self.store, state.image, section, created_by,
                                       state.maintainer)
                self.cache.put(key, image.id)
            else:
                image = yield from make(key)
            if cid and (self.opts.rm or self.opts.forcerm):
                yield self._removed(cid)
        state.image, state.section = image, section
        yield f" ---> {short(image.id)}\n"

    def _removed(self, cid: str) -> str:
        if self.opts.legacy_output:
            return f"Removing intermediate container {cid[:12]}\n"
        return f" ---> Removed intermediate container {cid[:12]}\n"

    def _cached(self, state: StageState, key: str, created_by: str,
                section: dict[str, Any]) -> Image | None:
        hit = self.cache.get(key)
        if self.cache_from is None:
            return hit
        return self.cache_from.get(hit, state.image, created_by, section)

    # -- WORKDIR, COPY/ADD, RUN --
    def _workdir(self, state: StageState, instr: ins.Value) -> Out:
        section = dict(state.section)
        text = md.workdir(section, self._x(state, instr.value))
        path = section["WorkingDir"]
        # One blank after "#(nop)" here (moby's withCmdCommentString), two for ENV & co.
        created_by = " ".join([*state.shell, "#(nop) " + text])
        tree = LayerTree(layer_dirs(self.store, state.image))
        if tree.lstat(path) is not None:
            yield from self._commit(state, section, created_by, None, container=True)
            return
        step = CopyStep.mkdir(path, tree)
        yield from self._commit(state, section, created_by,
                                self._layer_maker(state, section, created_by, step),
                                container=True)

    def _copy(self, state: StageState, instr: ins.Copy) -> Out:
        if instr.buildkit_only:
            raise InvalidArgument(f"the --{instr.buildkit_only} option requires BuildKit. Refer "
                                  "to https://docs.docker.com/go/buildkit/ to learn how to build "
                                  "images with BuildKit enabled")
        source_image = None
        if instr.source_stage:
            source_image = yield from self._source_image(state, instr)
        step = plan_copy(self.store, instr, state, self.ctx, source_image,
                         lambda t: self._x(state, t), self.escape)
        try:
            created_by = " ".join([*state.shell, "#(nop) " + step.history])
            section = dict(state.section)
            yield from self._commit(state, section, created_by,
                                    self._layer_maker(state, section, created_by, step))
        finally:
            step.close()

    def _source_image(self, state: StageState, instr: ins.Copy) -> Generator[str, None,
                                                                               Image | None]:
        name = self._x(state, instr.source_stage)
        dep = self.parsed.stage_index(name)
        if dep is not None:
            if dep not in self.results:
                raise InvalidArgument(f"invalid from flag value {name}: refers to current or "
                                      "later build stage")
            return self.results[dep]
        image = yield from self._image(name)
        return image

    def _layer_maker(self, state: StageState, section: dict[str, Any], created_by: str,
                     step: CopyStep) -> Any:
        def make(key: str) -> Generator[str, None, Image]:
            from runtime.build.layers import layer_image

            image = layer_image(self.store, state.image, section, created_by, step.plan.write,
                                state.maintainer)
            self.cache.put(key, image.id)
            return image
            yield  # a generator, like every step

        return make

    def _run(self, state: StageState, instr: ins.Run) -> Out:
        argv, script = self._run_argv(state, instr)
        args = self._run_args(state)
        prefix = [f"|{len(args)}", *args] if self._has_args(state) else []
        created_by = " ".join([*prefix, *argv])
        section = dict(state.section)

        def make(key: str) -> Generator[str, None, Image]:
            image = yield from self._run_container(state, section, created_by, instr, argv,
                                                   script)
            self.cache.put(key, image.id)
            return image

        yield from self._commit(state, section, created_by, make)

    def _has_args(self, state: StageState) -> bool:
        env = md.env_map(state.section)
        proxies = {k for k in self.opts.build_args if k in PROXY_ARGS}
        return any(k not in env for k in [*state.args, *proxies])

    def _run_args(self, state: StageState) -> list[str]:
        """``k=v`` of the build args RUN sees and records (proxies only in the env)."""
        env = md.env_map(state.section)
        return sorted(f"{k}={v}" for k, v in state.args.items() if k not in env)

    def _run_env(self, state: StageState) -> list[str]:
        env = md.env_map(state.section)
        extra = {k: v for k, v in state.args.items() if k not in env}
        for k, v in self.opts.build_args.items():
            if k in PROXY_ARGS and v is not None and k not in env:
                extra[k] = v
                self.used_args.add(k)
        return [*(state.section.get("Env") or []), *(f"{k}={v}" for k, v in extra.items())]

    def _run_argv(self, state: StageState, instr: ins.Run) -> tuple[list[str], str | None]:
        cmd = instr.command
        if not cmd.shell or not instr.heredocs:
            return md.command_argv(cmd, state.shell), None
        docs = instr.heredocs
        marker = cmd.args[0].strip().lstrip("<").lstrip("-").strip("'\"")
        if len(docs) == 1 and marker == docs[0].name:
            content = docs[0].content
            if content.startswith("#!"):
                return [runstep.script_path()], content
            return [*state.shell, content], None
        body = "".join(f"{d.content}{d.name}\n" for d in docs)
        return [*state.shell, f"{cmd.args[0]}\n{body}"], None

    def _run_container(self, state: StageState, section: dict[str, Any], created_by: str,
                       instr: ins.Run, argv: list[str], script: str | None
                       ) -> Generator[str, None, Image]:
        parent = state.image
        if parent is None:
            parent = metadata_image(self.store, None, section, "")
        spec = runstep.RunSpec(parent.id, argv, self._run_env(state), section,
                               instr.network or self.opts.network, script,
                               self.opts.extra_hosts)
        containers = self.engine.containers
        c = runstep.create(containers, spec, self.store.rootfs_upper)
        yield f" ---> Running in {c.id[:12]}\n"
        try:
            try:
                yield from runstep.execute(containers, c, argv)
            except runstep.RunFailed as e:
                raise StepFailed(e.message, e.code) from None
            upper = self.store.rootfs_upper(c.id)
            runstep.clean_upper(upper, LayerTree(layer_dirs(self.store, parent)), script)
            image = upper_image(self.store, state.image, section, created_by, upper,
                                state.maintainer,
                                userns.container_shift(c.host_config, containers.userns))
        except GeneratorExit:
            runstep.remove(containers, c.id)  # the client went away: cancel, leave nothing
            raise
        except BaseException:
            if self.opts.forcerm:
                runstep.remove(containers, c.id)
            raise
        if (self.opts.rm or self.opts.forcerm) and runstep.remove(containers, c.id):
            yield self._removed(c.id)
        return image

