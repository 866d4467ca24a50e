"""Every text an effect shows, in one place: each names an action possible from inside Inkscape (a
menu entry, a file to copy where, or an exact command with absolute paths), never command-line
advice that only works in the project's folder.

The engine and the client speak to command-line users (`sketch-abstraction stop`, `--weights-dir`,
"re-run install.py"); `for_error` turns what they say into what an Inkscape user can do.
"""

from __future__ import annotations

import os
import re
import shlex

from bridge.wording import count

MENU = "Extensions > Sketch Abstraction"
TOOLS = f"{MENU} > Tools"  # the nested submenu (the .inx files) after Object Sketch and Scene Sketch
INSERT_FINISHED = f"{TOOLS} > Insert Finished Sketches"
ENGINE_STATUS = f"{TOOLS} > Engine Status"
STOP_SKETCHES = f"{TOOLS} > Stop Sketches"
STOP_ENGINE = f"{STOP_SKETCHES}, choosing 'Every sketch, and stop the engine'"
WEIGHT_FILES = ("RN101.pt", "ViT-B-32.pt")
WEIGHTS_SOURCE = (
    "They are OpenAI's published CLIP models (github.com/openai/CLIP, 278 MB and 338 MB): the engine downloads "
    "them by itself once on a computer with internet access; offline, copy them from one that has them."
)

# Labels of the .inx options that messages quote (the .inx files must say exactly these).
MASK_PATH_LABEL = "Use the selected path or shape over the photo as the object"
MASK_TAB = "Mask"
NO_MASK_LABEL = {"sketch": "Keep it (sketch the whole photo)", "scene": "No mask: sketch the whole photo as one object"}

# The progress window's choices.
STOP_CHOICE = "Stop the sketch"
KEEP_CHOICE = "Keep it running in the background"
STOP_TIP = "Cancel the job in the engine. The document stays as it is."
KEEP_TIP = f"The engine finishes it; bring it in later with {INSERT_FINISHED}."
NOW_CHOICE = "Insert it as it is now"
NOW_TIP = "Insert the best strokes of every level so far; then stop the sketch or keep it running."
NOW_FETCHING = "Fetching the sketch as it is now..."
NOW_READY = "The sketch as it is now goes into the document. Stop the sketch, or keep it running?"

# The first screen of a long job (sketchabs.estimate).
ESTIMATE_TITLE = "Sketch Abstraction: before it starts"
START_CHOICE = "Start it"
CANCEL_CHOICE = "Cancel"


def inserted_now(count: int) -> str:
    """What the designer is told after "Insert it as it is now" with the jobs kept running."""
    what = "The sketch as it is now is" if count == 1 else f"The {count} sketches as they are now are"
    return (
        f"{what} inserted; the engine goes on. {INSERT_FINISHED} then brings in the finished "
        f"{'one' if count == 1 else 'ones'}: each replaces its layers if you have not edited them, "
        "otherwise it goes in beside them as a variation."
    )


def faster_choice(preset: str) -> str:
    return f"Use {preset} instead"


def estimate(photos: int, at_most: str, device: str, faster: str = "", faster_at_most: str = "") -> str:
    """The first screen's text: `at_most` and `faster_at_most` are durations as written (2 min)."""
    which = "this photo" if photos == 1 else f"these {photos} photos"
    text = (
        f"Sketching {which} takes at most {at_most} on this engine ({device}), as measured on its last "
        "sketch; sketches that settle early stop sooner."
    )
    if faster:
        text += f" {faster} takes at most {faster_at_most}."
    return text + " The document stays as it is until the sketch is inserted."


TEST_MODELS = "test models: the strokes mean nothing"
TEST_MODELS_TAG = "test models"  # in the names of layers made with them


WINDOW_TITLE = "Sketch Abstraction"  # the progress window's title (the tests' drivers look for it)
NEW_VARIATION_NOTE = "New variation (the Sketch tab's choice, kept from the last run)"


def command(*words: str) -> str:
    """A command line to copy into a terminal, each word quoted as the shell needs."""
    return " ".join(shlex.quote(w) for w in words)


def capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def stopped(count: int) -> str:
    return f"Stopped {_sketches(count)} in the engine. The document is unchanged."


def kept_running(count: int) -> str:
    keeps = "keeps" if count == 1 else "keep"
    return f"{capitalised(_sketches(count))} {keeps} running in the background. When done, choose {INSERT_FINISHED}."


def timed_out(minutes: float) -> str:
    return (
        f"The sketches are not done after {minutes:.0f} minutes; the engine keeps working on them. "
        f"Choose {INSERT_FINISHED} later, or {STOP_SKETCHES} to cancel them."
    )


def submitted(count: int) -> str:
    return f"Submitted {_sketches(count)} to the engine. When they are done, choose {INSERT_FINISHED}."


def kept_edited(old: str, new: str) -> str:
    return (
        f"'{old}' was edited, refined or locked since it was inserted, so it was kept as it is; the new "
        f"sketch went in as '{new}' next to it. Delete either layer in Layer > Layers and Objects."
    )


def identical(title: str) -> str:
    return (
        f"'{title}' came out exactly like the sketch it replaced (same settings, same random starts): nothing "
        "changed. For another take choose 'New variation' on the Sketch tab."
    )


def skipped(photo: str, why: str) -> str:
    return f"Not sketched: '{photo}'. {why}"


def with_variation(title: str, variation: int) -> str:
    """A layer name `title` as variation `variation` (before a [test models] tag, instead of any
    variation it names)."""
    base, tag = title, ""
    if base.endswith(f" [{TEST_MODELS_TAG}]"):
        base, tag = base[: -len(TEST_MODELS_TAG) - 3], f" [{TEST_MODELS_TAG}]"
    base = re.sub(r" \(variation \d+\)$", "", base)
    return f"{base} (variation {variation}){tag}"


def submitted_without_window(count: int) -> str:
    return (
        f"Submitted {_sketches(count)} to the engine, where {'it runs' if count == 1 else 'they run'} in the "
        "background: Inkscape's Python has no GTK 3 bindings (PyGObject), so there is no progress window to "
        f"wait in. To stop: {STOP_SKETCHES}. When done: {INSERT_FINISHED}. To get the window, run install.py "
        "again: it says the command that adds the bindings."
    )


NOTHING_WAITING = (
    "No sketches are waiting for this document's images. Sketches are remembered per document and "
    "image until they are inserted; run Object Sketch or Scene Sketch to make new ones."
)


def not_finished(names: list[str]) -> str:
    return f"Not finished yet: {', '.join(names)}. Choose {INSERT_FINISHED} again later (see {ENGINE_STATUS})."


def failed(title: str, message: str) -> str:
    return f"{title}: {message}"


def some_failed(messages: list[str]) -> str:
    return "Some sketches failed:\n\n" + "\n\n".join(messages)


def no_photos(selected: int) -> str:
    if selected:
        return (
            "The selection holds no photo (image). Select the photo too (Shift+click it), or choose "
            "'All images in the current layer' on the Run tab."
        )
    return "Select one or more photos (images) first, or choose 'All images in the current layer' on the Run tab."


NO_PHOTOS_IN_LAYER = (
    "The current layer holds no images. Switch to the layer that holds your photos, or select them and "
    "choose 'Selected images' on the Run tab."
)


def mask_needs_path(photo: str, selected_other: list[str], kind: str) -> str:
    choice = f"The {MASK_TAB} tab says '{MASK_PATH_LABEL}'"
    keep = f"or choose '{NO_MASK_LABEL[kind]}' on the {MASK_TAB} tab"
    if not selected_other:
        return (
            f"{choice}, but only the photo is selected. Draw a path or shape over '{photo}' and select it "
            f"together with the photo (Shift+click), {keep}."
        )
    texts = [what for what in selected_other if what == "text"]
    if texts:
        return (
            f"{choice}, but text cannot be a mask. Turn it into a path first (Path > Object to Path), then "
            f"run the effect again, {keep}."
        )
    shapes = ", ".join(sorted(set(selected_other)))
    return f"{choice}, but the selected {shapes} does not lie over '{photo}'. Move it over the photo, {keep}."


REMOTE_FILE_MISSING = (
    "The Run tab says to use a shared engine, but names no connection file. Choose, in the Run tab, the "
    "connection file your studio's administrator gave you, or choose This computer."
)


# Refine Sketch.
REFINE = "Refine Sketch"
REFINE_TAB = "Refine"
REFINE_ADD_LABEL = "Add strokes where the sketch misses edges of the photo"
REFINE_SELECT = (
    "Select the sketch's photo and some paths of the sketch layer (Shift+click), then run Refine Sketch again"
)
REFINE_NO_LAYER = (
    "No sketch layer is selected. Select some paths of the sketch layer (or make it the current layer in "
    "Layer > Layers and Objects), together with its photo, then run Refine Sketch again."
)
REFINE_LAYERS_DIFFER = (
    "The selected paths lie in different layers. Select paths of one sketch layer only (with its photo), "
    "then run Refine Sketch again."
)


def refine_photo(selected: int) -> str:
    """No single photo to refine against: `selected` images are selected (0: none, and the document
    does not have exactly one)."""
    if selected:
        return f"{selected} images are selected. {REFINE_SELECT}, with only the photo the sketch was made from."
    return f"Refine Sketch needs the sketch's photo, and the document has none or several. {REFINE_SELECT}."


def refine_no_paths(layer: str) -> str:
    return (
        f"The layer '{layer}' has no paths to refine. Select paths of the sketch layer instead (Layer > Layers "
        "and Objects shows which layer holds them), then run Refine Sketch again."
    )


def refine_too_many(layer: str, count: int, most: int) -> str:
    return (
        f"The layer '{layer}' has {count} strokes (each segment of a path is one), more than the {most} Refine "
        "Sketch takes. Move some paths to another layer (Layer > Move Selection to Layer...), then run it again."
    )


def setup_broken(config_file: str) -> str:
    return (
        f"The extension does not know where the engine is ({config_file} is missing or damaged). "
        "Install it again: in a terminal, in the Sketch Abstraction folder, run: python3 install.py"
    )


class Fixes:
    """The actions this installation allows: the engine's Python and install.py as install.py
    recorded them (engine.json), and where the engine looks for CLIP weights."""

    def __init__(self, config):
        self.config = config

    def reinstall(self, *options: str) -> str:
        installer = self.config.install_py
        if not installer:
            return (
                "Install it again: in a terminal, in the Sketch Abstraction folder, run: python3 install.py "
                + " ".join(options)
            )
        python = self.config.installer_python or "python3"
        return f"Run in a terminal: {command(python, installer, *options)}"

    def missing_weights(self, effect: str) -> str:
        folder = self.config.weights_folder
        names = " and ".join(WEIGHT_FILES)
        if not folder:
            return (
                f"The CLIP weights ({names}) are missing. {WEIGHTS_SOURCE} "
                f"{self.reinstall('--weights-dir', 'FOLDER_WITH_THEM')}"
            )
        made = _make_folder(folder)
        return (
            f"The CLIP weights are missing. {WEIGHTS_SOURCE} Copy {names} into {folder}"
            f"{' (it exists now)' if made else ''}, then run {effect} again. Or: "
            f"{self.reinstall('--skip-engine', '--weights-dir', 'FOLDER_WITH_THEM')}"
        )

    def missing_mask(self, kind: str = "sketch") -> str:
        return (
            "Finding the object automatically needs the background-removal add-on (the engine's 'mask' "
            f"extra), which is not installed. {self.reinstall('--extras', 'mask')}, or choose "
            f"'{NO_MASK_LABEL[kind]}' or '{MASK_PATH_LABEL}' on the {MASK_TAB} tab."
        )

    def python_missing(self) -> str:
        python = self.config.python
        return f"The engine's Python ({python}) is missing: the engine was moved or deleted. {self.reinstall()}"

    def for_error(self, code: str, message: str, hint: str, effect: str = "the effect", kind: str = "sketch") -> str:
        """The text to show for an engine or client error (`code`, `message`, `hint`)."""
        if code == "weights_missing" and "U2-Net" not in message:
            return self.missing_weights(effect)
        if code == "bad_input" and "'mask' extra" in message:
            return self.missing_mask(kind)
        if code == "start_failed" and self.config.python and not os.path.exists(self.config.python):
            return self.python_missing()
        if code == "not_answering":
            return f"{capitalised(_first_sentence(message))}. Choose {STOP_ENGINE}, then run {effect} again."
        if code == "engine_died":
            return f"{capitalised(message)}. Run {effect} again: the engine restarts. ({capitalised(hint)})"
        if code == "version_mismatch":
            return f"{capitalised(message)}. {self.reinstall('--skip-engine')}"
        text = capitalised(_dialog_words(message).rstrip("."))
        return f"{text}.\n\nWhat to do: {self.inside_inkscape(hint)}" if hint else f"{text}."

    def inside_inkscape(self, hint: str) -> str:
        """A command-line hint with the commands replaced by what does the same from Inkscape."""
        hint = hint.replace("`sketch-abstraction stop`", STOP_ENGINE)
        hint = hint.replace("`sketch-abstraction status`", ENGINE_STATUS)
        hint = hint.replace("sketch-abstraction status", ENGINE_STATUS)
        hint = re.sub(r"(re-?run|run) `?(python3? )?install\.py`?( again)?", self.reinstall(), hint)
        hint = re.sub(r"[Ss]ee `sketch-abstraction \w+ --help`[^.;]*", "change the value in the effect's dialog", hint)
        return capitalised(_dialog_words(hint).rstrip(".")) + "."


# The command-line options that engine messages name, as the effects' dialogs call them.
DIALOG_OPTIONS = {
    "--add": f"'{REFINE_ADD_LABEL}' on the {REFINE_TAB} tab",
    "--width": "the Style tab's stroke width",
    "--levels": "the Scene tab's simplicity rows",
    "--layers": "the Scene tab's fidelity layers",
    "--strokes": "the stroke counts",
}


def _dialog_words(text: str) -> str:
    """`text` with the options it names (and a placeholder after one: "--add N") in the dialogs' words."""
    return re.sub(r"(--[a-z]+)\b( [A-Z]+\b)?", lambda m: DIALOG_OPTIONS.get(m[1], m[0]), text)


def _first_sentence(text: str) -> str:
    return text.split(": it is")[0]


def _sketches(number: int) -> str:
    return count(number, "sketch", "sketches")


def _make_folder(folder: str) -> bool:
    """Create `folder` so that the user can copy files into it; whether it exists now."""
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:
        return False
    return True
