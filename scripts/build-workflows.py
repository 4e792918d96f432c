"""Write the shipped workflows: workflows/<name>.json (UI format), workflows/api/<name>.json
(API format, converted from the UI file by twostage_i2v.workflow.convert) and
workflows/<name>.jpg (a diagram for the frontend's template browser).

    .venv/bin/python scripts/build-workflows.py [--check]

Widget values are laid out by the node definitions of the in-process ComfyUI
(0.30.0 unless TWOSTAGE_COMFYUI_TREE / COMFYUI_PATH say otherwise) with this
package loaded. Each workflow is validated before it is written. --check writes
nothing and exits 1 when a file on disk differs from what would be written.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from twostage_i2v.headless import inprocess  # noqa: E402
from twostage_i2v.workflow.build import SPEC_BY_NAME, build_all, dump_json  # noqa: E402
from twostage_i2v.workflow.convert import ui_to_api  # noqa: E402
from twostage_i2v.workflow.thumbnail import write_thumbnail  # noqa: E402
from twostage_i2v.workflow.validate import format_report, validate  # noqa: E402
from twostage_i2v.headless.object_info import object_info_in_process  # noqa: E402

WORKFLOWS_DIR = ROOT / "workflows"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the files on disk, write nothing")
    args = ap.parse_args()
    with contextlib.redirect_stdout(sys.stderr):
        rt = inprocess.boot(ROOT / ".venv" / "build-base")
        object_info = object_info_in_process(rt.nodes)
    workflows = build_all(object_info)
    names = {k: v.get("display_name") or k for k, v in object_info.items()}
    stale = []
    for name, wf in workflows.items():
        report = validate(wf, object_info)
        if not report.ok:
            print(format_report(report, name))
            return 1
        ui_text = dump_json(wf)
        api_text = dump_json(ui_to_api(json.loads(ui_text), object_info))
        targets = {WORKFLOWS_DIR / f"{name}.json": ui_text, WORKFLOWS_DIR / "api" / f"{name}.json": api_text}
        for path, text in targets.items():
            if args.check:
                if not path.is_file() or path.read_text(encoding="utf-8") != text:
                    stale.append(path)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        thumb = WORKFLOWS_DIR / f"{name}.jpg"
        if args.check:
            with tempfile.TemporaryDirectory() as tmp:
                fresh = Path(tmp) / thumb.name
                write_thumbnail(wf, SPEC_BY_NAME[name].title, fresh, display_names=names)
                if not thumb.is_file() or thumb.read_bytes() != fresh.read_bytes():
                    stale.append(thumb)
        else:
            write_thumbnail(wf, SPEC_BY_NAME[name].title, thumb, display_names=names)
        print(f"{name}: {len(wf['nodes'])} nodes, {len(wf['links'])} links, "
              f"{len(report.missing_files)} model/input files not in this ComfyUI")
    if stale:
        print("out of date: " + ", ".join(str(p.relative_to(ROOT)) for p in stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
