"""Motion-prompt lint: categories per prompt, strip results, the CLI, the rules file, Wan's negative.

The oracle for each table row is a human reading of the prompt against the
issue's categories: appearance (hair/eye colour, clothing, body and face
descriptors, character and quality tags), camera (conflicting moves), actions
(more than two main actions), empty, length (over 512 umt5 tokens).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from twostage_i2v.prompt import lint as prompt_lint, wan_prompts
from twostage_i2v.prompt.lint import lint_prompt, strip_appearance
from twostage_i2v.headless.inprocess import REPO_ROOT

pytestmark = pytest.mark.core

SEED = ("Her hair sways gently in the breeze, she blinks and tilts her head slightly, "
        "soft ambient lighting, anime illustration style")

A, C, ACT, E, L = "appearance", "camera", "actions", "empty", "length"

CASES = [
    # --- motion only: clean
    ("seed", SEED, set()),
    ("turn-smile", "The girl slowly turns her head toward the window and smiles", set()),
    ("dress-moves", "Her dress flutters in the wind as she walks forward", set()),
    ("ponytail-moves", "Cherry blossom petals drift past, her ponytail swings as she looks back over her shoulder", set()),
    ("ears-tail-move", "Her cat ears twitch and her tail wags as she giggles", set()),
    ("breath-push-in", "She blinks twice, takes a deep breath and smiles softly, the camera slowly pushes in", set()),
    ("ambient-style", "steam rises from the coffee cup, warm morning light, watercolor style", set()),
    ("two-actions", "He raises his hand and waves, cinematic lighting, shallow depth of field", set()),
    ("scarf-billows", "Her hair and scarf billow in the wind, she squints against the sunlight", set()),
    ("style-only", "soft ambient lighting, anime illustration style", set()),
    ("tall-grass", "golden hour light, warm tones, film grain, the wind moves the tall grass", set()),
    ("ocean-waves", "the ocean waves crash on the rocks, seagulls fly overhead", set()),
    ("stand-walk", "She stands up and walks out of the room", set()),
    ("pan-and-tilt", "the camera pans left and tilts up slowly", set()),
    ("ja-motion", "髪が風になびき、彼女はまばたきしてゆっくり微笑む", set()),
    ("zh-motion", "她的头发在微风中轻轻飘动，她眨了眨眼，微微歪头，柔和的环境光，动漫插画风格", set()),
    ("emoji-zero-width", "Her hair sways 🌸 in the breeze, she blinks\u200b slowly", set()),
    ("russian", "Её волосы развеваются на ветру, она моргает", set()),
    ("rtl-mixed", "she smiles, مرحبا, שלום", set()),
    # --- appearance in sentences
    ("nl-heavy", "A beautiful young woman with long blonde hair and blue eyes, wearing a red dress, smiles at the camera", {A}),
    ("nl-has-hair", "She has short silver hair, emerald eyes and freckles.", {A}),
    ("nl-jacket", "The man in a black leather jacket walks toward the camera", {A}),
    ("nl-pale-skin", "Her pale skin glows softly in the moonlight", {A}),
    ("nl-cat-girl", "A cute girl with cat ears and a fluffy tail, in a frilly maid outfit", {A}),
    ("nl-kimono", "Her long black hair flows over her white kimono as she bows", {A}),
    ("nl-beard", "a handsome man with a beard and glasses", {A}),
    ("nl-wearing", "wearing a hoodie and jeans, she stretches and yawns", {A}),
    ("nl-red-dress", "a girl in a red dress dances in the rain, cinematic lighting", {A}),
    ("nl-wears", "She wears a black leather jacket.", {A}),
    # --- tag soups
    ("tags-classic", "1girl, solo, long hair, blonde hair, blue eyes, school uniform, smile, looking at viewer, masterpiece, best quality", {A}),
    ("tags-weights", "(masterpiece:1.2), (best quality:1.1), absurdres, 1boy, spiky hair, red eyes, armor, standing", {A}),
    ("tags-underscores", "masterpiece, best_quality, 1girl, blonde_hair, twintails, red_eyes, serafuku, pleated_skirt, "
                         "thighhighs, cat_ears, hatsune_miku_\\(vocaloid\\), walking", {A}),
    ("tags-scores", "score_9, score_8_up, rating_safe, 2girls, multiple girls, holding hands", {A}),
    ("tags-quality-wind", "very aesthetic, newest, 8k wallpaper, highly detailed, sharp focus, wind, hair blowing", {A}),
    ("tags-everything", "1girl, dancing, spinning, jumping, waving, pan left, pan right", {A, C, ACT}),
    ("tags-fullwidth", "ｂｌｏｎｄｅ ｈａｉｒ, she smiles 😀 and waves 👋", {A}),
    # --- camera conflicts
    ("cam-pan", "the camera pans left, then the camera pans right", {C}),
    ("cam-static-push", "static shot, the camera slowly pushes in on her face", {C}),
    ("cam-zoom", "zoom in, then zoom out", {C}),
    ("cam-tilt", "the camera tilts up to the sky and then tilts down to the street", {C}),
    ("cam-handheld-tripod", "handheld camera, tripod shot", {C}),
    ("cam-orbit", "orbit left around her while she spins, orbit right", {C}),
    ("cam-zh", "镜头向左平移，然后镜头向右平移", {C}),
    ("cam-preset-conflict", wan_prompts.compose_prompt("her hair sways, the camera pans right", "pan left"), {C}),
    # --- many actions
    ("act-five", "She walks to the window, opens it, waves at a friend, then jumps and spins around", {ACT}),
    ("act-phrasal", "He sits down, picks up a cup, drinks, stands up and walks away", {ACT}),
    ("act-three", "She dances, spins and waves", {ACT}),
    ("act-zh", "一个女孩跳舞，然后跑向窗边，打开窗户，挥手", {ACT}),
    ("act-ja", "彼女は歩いて、振り向いて、手を振って、ジャンプする", {ACT}),
    # --- empty
    ("empty", "", {E}),
    ("blank", "   \n\t ", {E}),
    ("separators", " , , ; 。", {E}),
    ("weight-only", "(:1.2)", {E}),
    # --- very long (well past 512 tokens, whatever the estimate's exact rate)
    ("long-en", ", ".join(["her hair sways gently in the breeze"] * 120), {L}),
    ("long-zh", "她的头发在微风中轻轻飘动，" * 90, {L}),
    ("long-appearance", "blonde hair, " + ", ".join(["she blinks slowly and her hair sways gently"] * 100), {A, L}),
    # --- non-English appearance
    ("zh-tags", "金发，蓝眼睛，校服，微笑", {A}),
    ("zh-hair-moves", "她的金色长发在微风中飘动，她眨眼并微微歪头", {A}),
    ("zh-quality", "杰作，最佳质量，一个女孩在花园里慢慢转身", {A}),
    ("ja-hair-eyes", "金髪の少女が手を振る、青い目の少女が振り向く", {A}),
    ("ja-tags", "セーラー服、ツインテール、最高品質", {A}),
]


def categories(text, **kw) -> set[str]:
    return {w["category"] for w in lint_prompt(text, **kw)}


def test_table_is_big_enough_and_names_are_unique():
    assert len(CASES) >= 40
    assert len({name for name, _, _ in CASES}) == len(CASES)
    kinds = set().union(*(c for _, _, c in CASES))
    assert kinds == set(prompt_lint.CATEGORIES)


@pytest.mark.parametrize("name,text,expected", CASES, ids=[c[0] for c in CASES])
def test_categories(name, text, expected):
    warnings = lint_prompt(text)
    assert {w["category"] for w in warnings} == expected, warnings
    for w in warnings:
        assert set(w) == {"category", "span", "message"}
        assert w["span"] in text and w["message"]
        if w["category"] in ("appearance", "camera", "actions"):
            assert w["span"].strip()
        else:
            assert w["span"] == ""


@pytest.mark.parametrize("name,text,expected", CASES, ids=[c[0] for c in CASES])
def test_strip_removes_every_appearance_warning_and_nothing_else(name, text, expected):
    stripped, removed = strip_appearance(text)
    spans = [w["span"] for w in lint_prompt(text) if w["category"] == "appearance"]
    assert removed == spans
    assert "appearance" not in categories(stripped)
    assert strip_appearance(stripped) == (stripped, [])
    if not spans:
        assert stripped == text


def test_seed_prompt_is_clean_and_survives_strip():
    assert lint_prompt(SEED) == []
    assert strip_appearance(SEED) == (SEED, [])
    assert lint_prompt(wan_prompts.EXAMPLE_MOTION) == []


@pytest.mark.parametrize("text,result,removed", [
    ("1girl, solo, long hair, blonde hair, blue eyes, school uniform, smile, looking at viewer, masterpiece, best quality",
     "smile", ["1girl", "solo", "long hair", "blonde hair", "blue eyes", "school uniform", "looking at viewer",
               "masterpiece", "best quality"]),
    ("Her long blonde hair sways, she opens her blue eyes", "Her hair sways, she opens her eyes", ["long blonde", "blue"]),
    ("A beautiful young woman with long blonde hair and blue eyes, wearing a red dress, smiles at the camera",
     "smiles at the camera", ["A beautiful young woman with long blonde hair and blue eyes", "wearing a red dress"]),
    ("(masterpiece:1.2), (smile:1.1), 1girl", "(smile:1.1)", ["(masterpiece:1.2)", "1girl"]),
    ("(blonde hair, blue eyes:1.1), she smiles", "she smiles", ["(blonde hair", "blue eyes:1.1)"]),
    ("Her pale skin glows softly in the moonlight", "Her skin glows softly in the moonlight", ["pale"]),
    ("a girl in a red dress dances in the rain, cinematic lighting",
     "a girl in a dress dances in the rain, cinematic lighting", ["red"]),
    ("1girl, blonde hair. She turns around and waves.", "She turns around and waves.", ["1girl", "blonde hair"]),
    ("She waves, blonde hair.", "She waves.", ["blonde hair"]),
    ("she smiles and waves wearing a white sundress", "she smiles and waves", ["wearing a white sundress"]),
    ("soft light on her pale skin, she breathes slowly", "soft light on her skin, she breathes slowly", ["pale"]),
    ("金发，蓝眼睛，校服，微笑", "微笑", ["金发", "蓝眼睛", "校服"]),
    ("金髪の少女が手を振る", "少女が手を振る", ["金髪の"]),
    ("一个穿着红色连衣裙的女孩在跳舞", "一个女孩在跳舞", ["穿着红色连衣裙的"]),
    ("masterpiece, best quality", "", ["masterpiece", "best quality"]),
])
def test_strip_results(text, result, removed):
    assert strip_appearance(text) == (result, removed)


def test_strip_of_pure_tag_soup_leaves_an_empty_prompt():
    stripped, _ = strip_appearance("masterpiece, 1girl, blonde hair")
    assert stripped == "" and categories(stripped) == {"empty"}


def test_hair_in_motion_is_fine_hair_colour_and_style_are_not():
    assert lint_prompt("her hair sways") == []
    assert lint_prompt("her hair blows in the wind, she brushes her hair back") == []
    for text, span in [("her blonde hair sways", "blonde"), ("her long wavy hair sways", "long wavy"),
                       ("her silver-haired friend waves", "silver-haired"), ("ponytail", "ponytail"),
                       ("bob cut, she nods", "bob cut")]:
        assert [w["span"] for w in lint_prompt(text)] == [span], text


def test_messages_name_the_span_and_the_reason():
    (w,) = lint_prompt("blonde hair")
    assert w == {"category": "appearance", "span": "blonde hair",
                 "message": '"blonde hair" describes hair colour or style, which the start image already fixes; '
                            "describe how the hair moves instead"}
    (w,) = lint_prompt("the camera pans left, then pans right")
    assert w == {"category": "camera", "span": "pans right",
                 "message": '"pans left" and "pans right" are opposite camera moves; one clip cannot do both, keep one'}
    (w,) = lint_prompt("tilt up, static shot")
    assert w["span"] == "static shot"
    assert w["message"] == '"static shot" asks for a still camera but "tilt up" moves it; keep one'
    (w,) = lint_prompt("She dances, spins and waves")
    assert w["span"] == "spins and waves"
    assert w["message"].startswith("3 main actions (dances, spins, waves): ")
    (w,) = lint_prompt("")
    assert w["category"] == "empty" and w["message"].startswith("the prompt is empty")


def test_warning_order_follows_categories_then_text():
    ws = lint_prompt("1girl, dancing, spinning, jumping, waving, pan left, pan right, blonde hair")
    assert [w["category"] for w in ws] == ["appearance", "appearance", "camera", "actions"]
    assert [w["span"] for w in ws[:2]] == ["1girl", "blonde hair"]


# ------------------------------------------------------------------ camera presets


# For each preset, a motion text whose camera move contradicts it.
CONTRADICTS = {
    "static": "the camera pans left",
    "slow push-in": "zoom out",
    "pull back": "the camera slowly pushes in",
    "pan left": "pan right",
    "pan right": "pan left",
    "tilt up": "tilt down",
    "tilt down": "tilt up",
    "orbit left": "orbit right",
    "orbit right": "orbit left",
    "handheld": "static shot",
}


def test_presets_and_order():
    assert wan_prompts.CAMERA_PRESETS == ("none", "static", "slow push-in", "pull back", "pan left", "pan right",
                                          "tilt up", "tilt down", "orbit left", "orbit right", "handheld")
    assert wan_prompts.PACE_PRESETS == ("slow", "natural", "fast")
    assert set(CONTRADICTS) == set(wan_prompts.CAMERA_PRESETS) - {"none"}


@pytest.mark.parametrize("preset", sorted(CONTRADICTS))
def test_every_camera_preset_is_recognised(preset):
    motion = "her hair sways"
    assert lint_prompt(wan_prompts.compose_prompt(motion, preset)) == []
    conflicting = wan_prompts.compose_prompt(f"{motion}, {CONTRADICTS[preset]}", preset)
    assert categories(conflicting) == {"camera"}, conflicting


def test_compose_prompt_order_and_trimming():
    assert wan_prompts.compose_prompt("  she blinks.  ") == "she blinks."
    assert wan_prompts.compose_prompt("she blinks.", "pan left", "slow") == \
        "she blinks, the camera pans left, slow, gentle motion"
    assert wan_prompts.compose_prompt("", "static", "fast") == "static shot, the camera stays fixed, fast, energetic motion"
    with pytest.raises(ValueError, match=r"unknown camera preset 'spin'; pick one of: none, static"):
        wan_prompts.compose_prompt("x", "spin")


# ------------------------------------------------------------------ length


def test_tokenizer_count_replaces_the_estimate():
    assert lint_prompt("she blinks", tokenizer=lambda t: 513) == [
        {"category": "length", "span": "",
         "message": "513 umt5 tokens, over the 512 Wan 2.1 was trained with; shorten the prompt"}]
    assert lint_prompt("she blinks", tokenizer=lambda t: list(range(512))) == []
    long = ", ".join(["her hair sways gently in the breeze"] * 120)
    assert categories(long, tokenizer=lambda t: 40) == set()
    (w,) = lint_prompt(long)
    count = prompt_lint.estimate_tokens(long)
    assert w["message"] == f"about {count} umt5 tokens (estimated without the tokenizer), over the 512 Wan 2.1 was trained with; shorten the prompt"


def test_estimate_follows_the_documented_rule():
    # end token + 1 per word + 1 per further 5 letters + 1 per CJK character + 1 per punctuation mark
    assert prompt_lint.estimate_tokens("") == 1
    assert prompt_lint.estimate_tokens("abcde") == 2
    assert prompt_lint.estimate_tokens("abcdefghijk") == 4
    assert prompt_lint.estimate_tokens("she blinks, 微笑。") == 1 + 1 + 2 + 1 + 2 + 1
    assert prompt_lint.estimate_tokens("ｂｌｉｎｋ") == prompt_lint.estimate_tokens("blink")


# ------------------------------------------------------------------ rules file


def test_rules_file_is_grouped_data_with_reasons():
    rules = json.loads(prompt_lint.RULES_PATH.read_text(encoding="utf-8"))
    for key in ("matching", "motion", "allowed", "camera", "actions", "empty", "length"):
        assert rules[key]["why"], key
    ids = [g["id"] for g in rules["appearance"]]
    assert len(ids) == len(set(ids))
    for g in rules["appearance"]:
        assert g["why"] and g["label"] and "{span}" in g["message"], g["id"]
        assert g["kind"] in ("tag", "modifier", "noun")
        assert g.get("terms") or g.get("patterns") or g.get("modifiers")
    assert set(rules["camera"]["moves"]) >= {m for pair in rules["camera"]["opposites"] for m in pair}
    assert rules["length"]["max_tokens"] == 512 and rules["actions"]["max_main"] == 2


def test_frontend_rules_compile_in_python_and_are_json():
    fr = json.loads(json.dumps(prompt_lint.frontend_rules()))
    sources = [fr["segment_split"], *fr["allowed"], *fr["motion"]["main"], *fr["motion"]["minor"]]
    sources += [p for g in fr["appearance"] for p in g["patterns"]]
    sources += [p for pats in fr["camera"]["moves"].values() for p in pats]
    for s in sources:
        re.compile(s, re.IGNORECASE)
    hair = next(g for g in fr["appearance"] if g["id"] == "hair")
    m = re.search(hair["patterns"][0], "her long blonde_hair sways", re.IGNORECASE)
    assert (m.group(0), m.group(1)) == ("long blonde", "hair")


@pytest.mark.skipif(shutil.which("node") is None, reason="node.js not installed")
def test_frontend_rules_compile_in_javascript(tmp_path):
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(prompt_lint.frontend_rules()), encoding="utf-8")
    script = """
const d = JSON.parse(require('fs').readFileSync(process.argv[1], 'utf8'));
const all = [d.segment_split, ...d.allowed, ...d.motion.main, ...d.motion.minor];
for (const g of d.appearance) all.push(...g.patterns);
for (const k in d.camera.moves) all.push(...d.camera.moves[k]);
for (const s of all) new RegExp(s, d.flags);
const re = new RegExp(d.appearance.find(g => g.id === 'hair').patterns[0], d.flags);
console.log(JSON.stringify([all.length, [...'her long blonde_hair sways'.matchAll(re)].map(m => [m[0], m[1]])]));
"""
    out = subprocess.run(["node", "-e", script, str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    n, matches = json.loads(out.stdout)
    assert n > 50 and matches == [["long blonde", "hair"]]


# ------------------------------------------------------------------ CLI


def _cli(*args, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "twostage_i2v", "lint-prompt", *args], capture_output=True,
                          cwd=REPO_ROOT, env=env, timeout=120)


@pytest.mark.parametrize("text", [
    "1girl, blonde hair, she dances, spins and waves, pan left, pan right",
    "金发，蓝眼睛，校服，微笑",
    "",
])
def test_cli_json_equals_the_library(text):
    a = _cli(text, "--json", env_extra={"PYTHONHASHSEED": "1"})
    b = _cli(text, "--json", env_extra={"PYTHONHASHSEED": "2"})
    assert a.returncode == 0, a.stderr.decode()
    assert a.stdout == b.stdout  # deterministic across processes
    out = json.loads(a.stdout.decode("utf-8"))
    assert out == {"prompt": text, "warnings": lint_prompt(text)}
    assert list(out) == ["prompt", "warnings"]


def test_cli_text_output_and_stdin():
    clean = _cli(SEED)
    assert clean.returncode == 0 and clean.stdout.decode().strip() == "clean: no warnings"
    warned = _cli("blonde hair, she waves")
    assert warned.returncode == 0
    assert warned.stdout.decode("utf-8").strip() == "appearance: " + lint_prompt("blonde hair")[0]["message"]
    piped = subprocess.run([sys.executable, "-m", "twostage_i2v", "lint-prompt", "-", "--json"], input="金发，微笑".encode(),
                           capture_output=True, cwd=REPO_ROOT, timeout=120)
    assert [w["span"] for w in json.loads(piped.stdout)["warnings"]] == ["金发"]


# ------------------------------------------------------------------ Wan's negative prompt


def test_default_negative_is_wan21_i2v_negative():
    # Wan2.1 wan/configs/shared_config.py sample_neg_prompt, with the prefix that
    # wan/configs/wan_i2v_14B.py puts in front for I2V.
    shared = ("色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，JPEG压缩残留，"
              "丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，"
              "静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走")
    assert wan_prompts.WAN_I2V_NEGATIVE == "镜头晃动，" + shared
    assert len(wan_prompts.WAN_I2V_NEGATIVE) == 142
