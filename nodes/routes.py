"""The package's HTTP routes, used by the frontend extension in web/.

GET  /twostage_i2v/inspect?folder=&file=   summary of a GGUF in one of ComfyUI's model folders
POST /twostage_i2v/lint {"text"[, "camera", "pace"]}   the Motion Prompt lint
GET  /twostage_i2v/bridge_plan?w=&h=&target=&...   what the Stage Bridge will do (and, given
                                                  resample=, the node's text for it)

Registered on ComfyUI's running PromptServer when there is one (main.py creates
it before loading custom nodes); in-process runs (tests, the demo) have none,
and ``register()`` does nothing there (while their nodes load, headless.inprocess's
stand-in server takes the routes, and nothing serves them). ComfyUI also serves every route under
``/api``. Handlers never touch a path the request names: a model file is found
only among the names ComfyUI itself lists for the folder.
"""

from __future__ import annotations

import asyncio
import logging
import ntpath
import sys

PREFIX = "/twostage_i2v"
# The folders the GGUF loader nodes list (unet and clip are ComfyUI's legacy names).
INSPECT_FOLDERS = ("diffusion_models", "unet", "text_encoders", "clip")
MAX_BODY = 256 * 1024  # a prompt, not an upload


class RequestError(ValueError):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def check_model_name(folder: str, name: str) -> None:
    """Refuse (400) anything but a relative .gguf name inside one of the inspect folders."""
    if folder not in INSPECT_FOLDERS:
        raise RequestError(400, f"folder {folder!r} is not one of {', '.join(INSPECT_FOLDERS)}")
    if not name:
        raise RequestError(400, "give the model file name as ?file=NAME")
    parts = name.replace("\\", "/").split("/")
    if "\x00" in name or name.startswith(("/", "\\")) or ntpath.splitdrive(name)[0]:
        raise RequestError(400, f"{name!r} is not a file name inside models/{folder}/ (absolute paths are refused)")
    if any(p in ("..", ".") for p in parts):
        raise RequestError(400, f"{name!r} leaves models/{folder}/ (.. is refused)")
    if not name.lower().endswith(".gguf"):
        raise RequestError(400, f"{name!r} is not a .gguf file")


def resolve_model(folder: str, name: str) -> str:
    """Full path of ``name`` if ComfyUI lists it in ``folder``, else 404."""
    import folder_paths

    from ..twostage_i2v.comfy.folders import list_gguf

    check_model_name(folder, name)
    listed = folder_paths.map_legacy(folder)  # unet -> diffusion_models, clip -> text_encoders
    path = folder_paths.get_full_path(listed, name) if name in list_gguf(listed) else None
    if not path:
        raise RequestError(404, f"{name} is not in ComfyUI's models/{folder}/ (refresh after adding files)")
    return path


def inspect_model(folder: str, name: str) -> dict:
    from ..twostage_i2v.gguf.reader import GGUFReadError
    from ..twostage_i2v.models.summary import summarize_file

    path = resolve_model(folder, name)
    try:
        summary = summarize_file(path)
    except GGUFReadError as exc:
        raise RequestError(422, str(exc)) from None
    summary["folder"] = folder
    summary["file"] = name
    return summary


def lint(body) -> dict:
    from ..twostage_i2v.prompt import lint as prompt_lint, wan_prompts

    if not isinstance(body, dict) or not isinstance(body.get("text"), str):
        raise RequestError(400, 'send JSON {"text": "..."} (optional "camera" and "pace" presets)')
    text = body["text"]
    if "camera" in body or "pace" in body:
        try:
            text = wan_prompts.compose_prompt(text, body.get("camera", wan_prompts.DEFAULT_CAMERA),
                                              body.get("pace", wan_prompts.DEFAULT_PACE))
        except ValueError as exc:
            raise RequestError(400, str(exc)) from None
    return {"prompt": text, "warnings": prompt_lint.lint_prompt(text)}


def _number(query, key: str, default, kind=int):
    """``query[key]`` as ``kind`` (int or float), ``default`` when absent or empty, else 400."""
    raw = query.get(key)
    if raw in (None, ""):
        return default
    try:
        return kind(raw)
    except ValueError:
        raise RequestError(400, f"{key}={raw!r} is not a {'whole number' if kind is int else 'number'}") from None


def bridge_plan(query) -> dict:
    """``geometry.plan_details`` for the node's widgets. Without ``w``/``h`` (the node has not run
    yet) the source is assumed to be the Stage Plan size of the target, as the workflows render it."""
    from ..twostage_i2v.bridge import geometry

    try:
        target = query.get("target", geometry.TARGETS[0])
        tw, th = geometry.target_size(target, _number(query, "width", 832), _number(query, "height", 480))
        w, h = _number(query, "w", None), _number(query, "h", None)
        assumed = w is None or h is None
        if assumed:
            w, h = geometry.stage1_size(tw, th)
        out = geometry.plan_details(w, h, tw, th, query.get("fit", "crop"), query.get("orientation", "auto"),
                                  query.get("anchor", "center"))
        out["source_assumed"] = assumed
        if "length_from" in query or "frames" in query:
            out["length"], out["length_note"] = geometry.clip_length(
                query.get("length_from", "frames"), _number(query, "frames", 81),
                _number(query, "seconds", 5.0, float), _number(query, "fps", 16.0, float))
        if "resample" in query:
            # The node's own run text for these widgets, so the panel reads the same before and after a run.
            from ..twostage_i2v.bridge import pixels

            resample, pad_style = query["resample"], query.get("pad_style", "color")
            pad_color = query.get("pad_color", "#000000")
            pixels.check_resample(resample)
            pixels.pad_rgb(pad_style, pad_color)
            out["text"] = geometry.describe(out, resample, pad_style, pad_color, out.get("length_note"))
    except RequestError:
        raise
    except ValueError as exc:
        raise RequestError(400, str(exc)) from None
    return out


def add_routes(routes) -> None:
    """Add the handlers to an aiohttp ``RouteTableDef``."""
    from aiohttp import web

    async def answer(fn, *args):
        try:
            # Off the event loop: reading a GGUF header or linting can take a moment.
            return web.json_response(await asyncio.to_thread(fn, *args))
        except RequestError as exc:
            return web.json_response({"error": str(exc)}, status=exc.status)

    @routes.get(PREFIX + "/inspect")
    async def inspect_route(request):
        return await answer(inspect_model, request.query.get("folder", ""), request.query.get("file", ""))

    @routes.post(PREFIX + "/lint")
    async def lint_route(request):
        if request.content_length is not None and request.content_length > MAX_BODY:
            return web.json_response({"error": f"the prompt is over {MAX_BODY} bytes"}, status=413)
        try:
            body = await request.json()
        except ValueError:
            body = None
        return await answer(lint, body)

    @routes.get(PREFIX + "/bridge_plan")
    async def bridge_plan_route(request):
        return await answer(bridge_plan, request.query)


def register() -> bool:
    """Add the routes to ComfyUI's running server; False (and nothing done) without one.

    Never raises: the nodes must load even if the routes cannot be added."""
    server = sys.modules.get("server")  # ComfyUI's server.py, imported by main.py; never import it here
    instance = getattr(getattr(server, "PromptServer", None), "instance", None)
    if instance is None:
        return False
    try:
        if any(getattr(r, "path", "").startswith(PREFIX + "/") for r in instance.routes):
            return True  # the package was imported twice
        add_routes(instance.routes)
    except Exception:
        logging.exception("TwoStage I2V: the routes for the node panels could not be added; the nodes still work")
        return False
    return True
