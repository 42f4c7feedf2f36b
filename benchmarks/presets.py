"""Pack trained runs as presets, and measure every preset's check against its card.

    python benchmarks/presets.py pack conv_mnist /work/runs/conv_mnist --card card.json
    python benchmarks/presets.py pack codec_0.05 /work/runs/codec_0.05 --compare \
        --then "round 11, from codec_0.025: aezoo compress train ..." --time "round 11: ..."
    python benchmarks/presets.py check                  # every preset: card vs measured
    python benchmarks/presets.py check denoise_gray
    python benchmarks/presets.py docs                   # README's table, docs/presets.md
    python benchmarks/presets.py codec-figures rd/results.json --beside "with nothing else running"

`pack` writes aezoo/presets/NAME/ (run.json and weights.npz, float16 weights unless
--float32; see aezoo.runs.pack) and the card, completed with the SHA-256 of the files: CARD
(a JSON file with the card's text fields and its `check`), or, for another round of a preset,
its card as it is, with `--then` appended to how it was trained and `--time` to how long.  A
preset's file is replaced only when a better model has been measured, so that the repository
does not grow with every experiment.  `--compare` measures the check on the run (float32) and
on the packed preset, and writes both into the card: the preset's figures become the check
the tests reproduce, and a "float16 storage" figure states the cost of float16.
`codec-figures` writes every codec card's Kodak and BD-rate figures from one `aezoo compress
evaluate` of all the codec presets, so that the cards agree with each other (the float16
storage line a card has is kept); first it prints, for the round's account, the PSNR at
0.25-1.0 bpp against the curve the cards stated until then (read from their headlines, so
rounded: an unchanged curve shows +-0.01 dB and +-0.1 %) and how many more bits than WebP
the codecs need at equal PSNR.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from offline import DATA

from aezoo import presets
from aezoo.apps import cli

ROOT = Path(__file__).resolve().parent.parent  # the checkout: README.md, docs/presets.md


def read_card(args: argparse.Namespace) -> dict:
    """The card `pack` will write, with --then and --time appended, checked whole before
    anything is written: a bad card leaves the preset's folder as it was.

    Raises:
        ValueError: an unusable preset name, a card that is not a JSON object, or one that
            lacks a field or a check `pack` needs.
    """
    if not args.name or args.name.startswith(".") or Path(args.name).name != args.name:
        raise ValueError(f"{args.name!r} cannot name a preset: it names its folder in "
                         f"{presets.PRESET_DIR}.")
    if args.card:
        source = args.card
        try:
            card = json.loads(Path(args.card).read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{args.card} is not JSON: {error}.") from None
    elif args.name in presets.PRESETS:
        source, card = f"the card of {args.name}", dict(presets.PRESETS[args.name])
    else:
        raise ValueError(f"{args.name} is not a preset yet: give its card with --card.")
    check_card(card, source, args.compare)
    if args.then:
        card["trained_with"] += "; then " + args.then
    if args.time:
        card["training_time"] += "; " + args.time
    return card


def check_card(card, source: str, compare: bool) -> None:
    """Refuses a card that lacks what `pack` and the tests need: every text field, a list of
    figures, and a check of a known kind with the fields it reads (and, unless `compare`
    measures them, the figures it reproduces)."""
    if not isinstance(card, dict):
        raise ValueError(f"{source} is not a card: a JSON object is needed.")
    missing = [key for key in presets.CARD_FIELDS if not card.get(key)]
    if missing:
        raise ValueError(f"{source} lacks {', '.join(missing)}.")
    wrong = [key for key in presets.CARD_FIELDS if key not in ("figures", "check")
             and not isinstance(card[key], str)]
    if wrong:
        raise ValueError(f"{source}: {', '.join(wrong)} must be text.")
    if not isinstance(card["figures"], list) or not all(isinstance(figure, str)
                                                        for figure in card["figures"]):
        raise ValueError(f"{source}: figures must be a list of lines of text.")
    check = card["check"]
    kind = check.get("kind") if isinstance(check, dict) else None
    if kind not in presets.CHECK_FIELDS:
        raise ValueError(f"{source}: its check needs a kind of "
                         f"{', '.join(presets.CHECK_FIELDS)}; it has {kind!r}.")
    inputs, figures, _ = presets.CHECK_FIELDS[kind]
    missing = [key for key in inputs + (() if compare else figures) if key not in check]
    if missing:
        raise ValueError(f"{source}: its {kind} check lacks {', '.join(missing)}.")


def pack(args: argparse.Namespace, card: dict) -> None:
    """Packs the run as preset `args.name` with `card` (from `read_card`): the run is opened
    and, with --compare, measured before anything is written."""
    from aezoo import runs  # TensorFlow, after cli.start_tensorflow() quietened it

    run = runs.load_run(args.run)
    measured_task = presets.CHECK_FIELDS[card["check"]["kind"]][2]
    if run.task != card["task"] or run.task != measured_task:
        raise ValueError(f"{args.run} is a {run.task} run; the card is for a {card['task']} "
                         f"preset with a {card['check']['kind']} check.")
    folder = presets.PRESET_DIR / args.name
    cli.check_folder(folder)
    before = presets.PRESETS.get(args.name)
    # The card as `checks.measure` reads it: first for the run, then for the new files.
    presets.PRESETS[args.name] = card
    try:
        if args.compare:
            from aezoo.presets import checks

            measured = checks.measure(args.name, DATA, args.run)  # the check works, or no files
        card["sha256"] = runs.pack(run, folder, float16=not args.float32)
    except BaseException:
        if before is None:
            del presets.PRESETS[args.name]
        else:
            presets.PRESETS[args.name] = before
        raise
    card["precision"] = "float32" if args.float32 else "float16"
    if run.task == "compress" and run.application.get("role") != "postfilter":
        from aezoo import codec

        # What its .aez files carry, by which `decompress` finds it: of the packed weights
        # (float16 storage changes them), so read back from the folder.
        card["fingerprint"] = codec.fingerprint(runs.load_run(folder).model).hex()
    if args.compare:
        stored = checks.measure(args.name, DATA)
        print(f"run (float32): {measured}\npreset ({card['precision']}): {stored}")
        card["check"] = {**card["check"], **{key: float(f"{value:.6g}")
                                             for key, value in stored.items()}}
        if not args.float32:
            line = storage_line(card["check"], measured, stored, run.info["model"])
            card["figures"] = [figure for figure in card["figures"]
                               if not figure.startswith("float16 storage")] + [line]
            print(line)
    runs.write_text(folder / "card.json", json.dumps(card, indent=2) + "\n")
    print(f"Packed {args.run} as {folder} ({sum(p.stat().st_size for p in folder.iterdir())} "
          "bytes)")


# How a card writes each figure a check measures.
FIGURE_FORMATS = {"psnr": "{:.3f} dB", "bpp": "{:.4f} bpp", "mse": "an MSE of {:.4g}",
                  "roc_auc": "a ROC-AUC of {:.4f}", "nll": "{:.2f} nats"}


def storage_line(check: dict, measured: dict[str, float], stored: dict[str, float],
                 model: str) -> str:
    """The card's figure for the cost of float16 storage: the check on the preset against
    the check on the float32 run it was packed from."""
    if "files" in check:
        stems = [Path(file).stem for file in check["files"]]
        subject = " and ".join([", ".join(stems[:-1]), stems[-1]] if len(stems) > 1 else stems)
        if "noise" in check:
            subject += f", {check['noise']} noise"
    else:
        subject = f"{check.get('dataset', check.get('csv'))} {check['split']}"

    def figures(values: dict[str, float]) -> str:
        return " and ".join(FIGURE_FORMATS[key].format(value) for key, value in values.items())

    line = (f"float16 storage: the check ({subject}) gives {figures(stored)}, against "
            f"{figures(measured)} for the float32 run")
    if check["kind"] == "compress" and ("hyperprior" in model or "meanscale" in model):
        line += " (the integer tables and integer hyper-synthesis are stored exactly)"
    return line


def check(args: argparse.Namespace) -> None:
    from aezoo.presets import checks

    names = args.names or sorted(presets.PRESETS)
    for name in names:
        presets.folder(name)  # an unknown name, or damaged files: one line, before any work
    print("| preset | figure | card | measured |")
    print("|---|---|---|---|")
    for name in names:
        measured = checks.measure(name, DATA)
        for key, value in measured.items():
            print(f"| {name} | {key} | {presets.PRESETS[name]['check'][key]:.6g} | {value:.6g} |")


def docs(args: argparse.Namespace) -> None:
    """README's presets table and docs/presets.md's cards, from the cards; both files are
    written together, or neither is (a failure leaves both as they were)."""
    rows = ["| preset | task | headline (measured, see its card) |", "|---|---|---|"]
    rows += [f"| `{name}` | {card['task']} | {card['headline']} |"
             for name, card in presets.PRESETS.items()]
    readme = (ROOT / "README.md").read_text()
    head, rest = readme.split("<!-- presets-table -->\n", 1)
    rest = rest.split("\n\n", 1)[1]
    page = ROOT / "docs" / "presets.md"
    page_head = page.read_text().split("<!-- presets-cards -->", 1)[0]
    cli.start_tensorflow()  # (aezoo.runs imports it)
    from aezoo import runs

    with runs.together():
        runs.write_text(ROOT / "README.md", head + "<!-- presets-table -->\n"
                        + "\n".join(rows) + "\n\n" + rest)
        runs.write_text(page, page_head + "<!-- presets-cards -->\n\n" + presets.markdown())
    print("Wrote README.md's presets table and docs/presets.md's cards.")


def codec_figures(args: argparse.Namespace) -> None:
    """Every evaluated codec preset's headline and figures, from one results.json; the cards
    are written together, or none is (a failure leaves every card as it was)."""
    results = read_results(args.results)
    ours = sorted(results["curves"]["aezoo"], key=lambda point: point["bpp"])
    unknown = [p["setting"] for p in ours if presets.PRESETS.get(p["setting"], {}).get("task")
               != "compress"]
    if unknown:
        raise ValueError(f"{', '.join(unknown)}: not codec presets; evaluate the presets by "
                         "name (--model codec_...)")
    plain_results = read_results(args.plain) if args.plain else None
    cli.start_tensorflow()  # (aezoo.runs and aezoo.rate_distortion import it)
    from aezoo import runs

    bd = results["bd_rate"]

    filtered = (" (each decoded through the post-filter its card names)"
                if ours[0].get("postfilter") else "")
    curve = (f"the {len(ours)} rate points ({ours[0]['bpp']:.3f}-{ours[-1]['bpp']:.3f} bpp) "
             f"against Pillow's codecs on Kodak{filtered}: " + _bd_text(bd))
    plain = {}
    if plain_results is not None:
        plain = {p["setting"]: p for p in plain_results["curves"]["aezoo"]}
        curve += ("; without the post-filter (`--postfilter none`): "
                  + _bd_text(plain_results["bd_rate"]))
    curve += "; see docs/compression.md"
    print(curve)
    print(against_previous(results, ours))
    measured_with = ("aezoo compress evaluate --model " + " ".join(p["setting"] for p in ours)
                     + " --images ../shared/data/raw/kodak --out rd/")
    if plain:
        measured_with += ", then the same with --postfilter none --out rd_plain/"
    cards = {}
    for point in ours:
        name = point["setting"]
        card = dict(presets.PRESETS[name])  # keys keep their order: a small diff
        card["headline"] = f"Kodak {point['bpp']:.3f} bpp, {point['psnr']:.2f} dB PSNR"
        card["summary"] = (card["summary"].split(": photos")[0]
                           + f": photos to .aez files of about {point['bpp']:.2f} bits a pixel"
                           " and back.")
        card["figures"] = [
            f"the {len(results['images'])} Kodak images at full size (bits counted from the "
            f"files, RGB PSNR): {point['bpp']:.3f} bpp, {point['psnr']:.2f} dB, MS-SSIM "
            f"{point['ms_ssim']:.4f}; encode {point['encode_s']:.2f} s and decode "
            f"{point['decode_s']:.2f} s an image on 2 cores {args.beside}"
            + (f" ({plain[name]['psnr']:.2f} dB and decode {plain[name]['decode_s']:.2f} s "
               "without the post-filter)" if name in plain else ""), curve,
        ] + [line for line in presets.PRESETS[name]["figures"]
             if line.startswith("float16 storage")]
        card["measured_with"] = measured_with
        cards[name] = card
    with runs.together():  # every card, or none: the cards agree with each other
        for name, card in cards.items():
            runs.write_text(presets.PRESET_DIR / name / "card.json",
                            json.dumps(card, indent=2) + "\n")
    for name, card in cards.items():
        print(f"{name}: {card['headline']}")


# The classical codecs a card's figures compare with (aezoo.rate_distortion.CODECS).
CLASSICAL = ("jpeg", "webp", "jpeg2000")


def read_results(path: str) -> dict:
    """An `aezoo compress evaluate` results.json with what `codec-figures` reads: aezoo's
    curve and the BD-rates against every classical codec (an evaluation without one, e.g.
    where Pillow lacked its WebP or JPEG 2000 encoder, cannot give the cards' figures).

    Raises:
        ValueError: a file that is not such a results.json, named with what it lacks.
    """
    try:
        results = json.loads(Path(path).read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not JSON: {error}.") from None
    if not isinstance(results, dict) or not results.get("curves", {}).get("aezoo") \
            or "bd_rate" not in results or "images" not in results:
        raise ValueError(f"{path} is not the results.json of `aezoo compress evaluate "
                         "--model codec_...`.")
    missing = [name for name in CLASSICAL if not results["curves"].get(name)
               or not isinstance(results["bd_rate"].get(name), dict)]
    if missing:
        raise ValueError(f"{path} has no {' and no '.join(missing)} curve: the cards compare "
                         f"with {', '.join(CLASSICAL)}; evaluate with all of them (no --codecs, "
                         "and a Pillow with each encoder: python -m PIL.report).")
    return results



def _bd_text(bd: dict) -> str:
    """BD-rates over 0.25-1.0 bpp against the classical codecs, in words."""
    def rate(codec: str, quality: str) -> str:
        value = bd[codec][f"{quality}_0.25-1.0bpp"]
        return "n/a" if value is None else f"{value:+.1f} %"

    return (f"BD-rate in PSNR {rate('jpeg', 'psnr')} against JPEG 4:2:0, "
            f"{rate('webp', 'psnr')} against WebP, {rate('jpeg2000', 'psnr')} against JPEG "
            "2000 over 0.25-1.0 bpp of both curves "
            f"(MS-SSIM: {rate('jpeg', 'ms_ssim_db')}, {rate('webp', 'ms_ssim_db')}, "
            f"{rate('jpeg2000', 'ms_ssim_db')})")


RATES = (0.25, 0.3, 0.5, 0.75, 0.9, 1.0)


def against_previous(results: dict, ours: list[dict]) -> str:
    """A table for the round's account: our PSNR at each rate of 0.25-1.0 bpp, now and with
    the curve the cards state before this call rewrites them (their headlines), and how many
    more bits than WebP ours need at equal PSNR; then the BD-rate against that curve."""
    import math
    import re

    from scipy.interpolate import PchipInterpolator

    from aezoo.rate_distortion import bd_rate, quality_at_rate

    def hull(points):  # a BD curve needs qualities that increase with the rate
        kept = []
        for rate, quality in sorted(points):
            if not kept or quality > kept[-1][1]:
                kept.append((rate, quality))
        return kept

    now = hull([(p["bpp"], p["psnr"]) for p in ours])
    headlines = [re.fullmatch(r"Kodak ([\d.]+) bpp, ([\d.]+) dB PSNR", card["headline"])
                 for card in presets.PRESETS.values() if card["task"] == "compress"]
    before = hull([(float(m[1]), float(m[2])) for m in headlines if m])
    webp = sorted((p["psnr"], math.log10(p["bpp"])) for p in results["curves"]["webp"])
    webp_rate = PchipInterpolator(*zip(*webp), extrapolate=False)

    def number(value, form):
        return "-" if value is None or not math.isfinite(value) else form.format(value)

    lines = ["| bpp | PSNR now (dB) | with the cards' curve | change | WebP's bpp at that PSNR "
             "| our extra bits |", "|---|---|---|---|---|---|"]
    for rate in RATES:
        quality, previous = quality_at_rate(now, rate), quality_at_rate(before, rate)
        theirs = None if quality is None else 10 ** float(webp_rate(quality))
        change = None if quality is None or previous is None else quality - previous
        extra = None if theirs is None else 100 * (rate / theirs - 1)
        lines.append(f"| {rate} | {number(quality, '{:.2f}')} | {number(previous, '{:.2f}')} | "
                     f"{number(change, '{:+.2f}')} | {number(theirs, '{:.3f}')} | "
                     f"{number(extra, '{:+.0f} %')} |")
    shift = bd_rate(before, now, rate_range=(0.25, 1.0)) if len(before) > 1 else None
    lines.append(f"\nBD-rate over 0.25-1.0 bpp against the cards' curve: "
                 f"{number(shift, '{:+.1f} %')}")
    return "\n".join(lines)


@cli.guarded("presets.py")  # user errors: one line on stderr, status 2
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    actions = parser.add_subparsers(dest="action", required=True)
    packer = actions.add_parser("pack")
    packer.add_argument("name")
    packer.add_argument("run")
    packer.add_argument("--card", help="the card as a JSON file (default: the preset's card, "
                        "for another round of a preset)")
    packer.add_argument("--then", help="another round: how it was trained, appended to the "
                        "card's command")
    packer.add_argument("--time", help="another round: how long it took, appended to the "
                        "card's training time")
    packer.add_argument("--float32", action="store_true")
    packer.add_argument("--compare", action="store_true",
                        help="measure the card's check on the run and on the packed preset, and write "
                        "both into the card")
    checker = actions.add_parser("check")
    checker.add_argument("names", nargs="*")
    actions.add_parser("docs", help="README's presets table and docs/presets.md from the cards")
    figures = actions.add_parser(
        "codec-figures", help="every codec card's Kodak figures from one evaluate results.json")
    figures.add_argument("results", help="results.json of `aezoo compress evaluate --model "
                         "codec_...` over all the codec presets on Kodak")
    figures.add_argument("--plain", help="results.json of the same evaluation with "
                         "`--postfilter none`: each card then gives its figures without the "
                         "post-filter as well")
    figures.add_argument("--beside", required=True,
                         help="what ran beside the timings, e.g. 'with nothing else running'")
    args = parser.parse_args(argv)
    if args.action in ("docs", "codec-figures"):
        {"docs": docs, "codec-figures": codec_figures}[args.action](args)
        return 0
    if args.action == "pack":
        card = read_card(args)  # before TensorFlow starts and before anything is written
        cli.start_tensorflow()
        pack(args, card)
        return 0
    cli.start_tensorflow()
    check(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
