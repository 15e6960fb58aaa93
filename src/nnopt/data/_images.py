"""Image folders in torchvision's ImageFolder layout, decoded with Pillow into (n, C, H, W) pixels in [0, 1].

ROOT/CLASS/**/*.png (one subfolder per class, names sorted), or ROOT/train|val|test/CLASS/... with the splits kept
as given. One pass decodes every file at its own size and mode; the common size and the channels are learnt from
it, and only the files that differ are decoded again, converted and resized. Pixels travel as uint8 and become
float32 once, at the end. Many files are decoded in a process pool: Pillow holds the GIL while it decodes small
images, so threads do not help.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nnopt.config import image_settings
from nnopt.errors import DataError, param

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
SPLITS = ("train", "val", "test")
DEFAULT_SIZE = 32
GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
FLOAT_MODES = ("I", "I;16", "I;16B", "I;16L", "F")  # decoded as float32: "L" would clip them at 255
POOL_MIN_FILES = 2000  # below this a pool's start-up costs more than it saves (benchmarks/images.py)
CHUNK = 256  # files per pool task
SHOWN_BAD = 20  # undecodable files listed by name (all are counted)


@dataclass
class Images:
    """Decoded images of a folder, in listing order."""

    X: np.ndarray  # float32 (n, C, H, W) in [0, 1]
    labels: list[str] | None  # class folder of each image, None for an unlabelled listing
    splits: list[str] | None  # the given split of each image (train / val / test), None without given splits
    paths: list[str]
    skipped: list[str] = field(default_factory=list)  # files that did not decode, with the reason


def parse_image_size(value) -> tuple[int, int] | None:
    """None, 32, "32", "32x48" (height x width) or [32, 48] -> (height, width)."""
    text, _ = image_settings(value, False)
    return None if text is None else tuple(int(part) for part in text.split("x"))


def _visible(entry: os.DirEntry | Path) -> bool:
    return not entry.name.startswith(".")


def _subfolders(folder: Path) -> list[Path]:
    return sorted((Path(e.path) for e in os.scandir(folder) if e.is_dir() and _visible(e)), key=lambda p: p.name)


def image_files(folder: Path) -> list[Path]:
    """Image files under `folder`, recursively, sorted by path (hidden files and other suffixes left out)."""
    found = []
    for directory, subdirs, files in os.walk(folder, followlinks=True):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        found += [Path(directory) / name for name in sorted(files)
                  if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES]
    return found


def has_images(path: Path) -> bool:
    """Whether a directory holds image files or folders (not MNIST-layout IDX files): read as an image folder."""
    names = [e.name for e in os.scandir(path) if _visible(e)]
    if any("idx" in name and "ubyte" in name for name in names):
        return False
    return any((path / name).is_dir() or Path(name).suffix.lower() in IMAGE_SUFFIXES for name in names)


def is_image_source(source) -> bool:
    """A directory of images, an image file, or a list of image files."""
    if isinstance(source, (list, tuple)) and source and all(isinstance(s, (str, os.PathLike)) for s in source):
        return all(Path(s).suffix.lower() in IMAGE_SUFFIXES for s in source)
    if not isinstance(source, (str, os.PathLike)):
        return False
    path = Path(source).expanduser()
    if path.is_file():
        return path.suffix.lower() in IMAGE_SUFFIXES
    return path.is_dir() and has_images(path)


def _split_layout(root: Path) -> list[str] | None:
    """The given splits when ROOT holds train/ (and val/, test/) and nothing else, else None."""
    names = [p.name for p in _subfolders(root)]
    if "train" in names and all(name in SPLITS for name in names):
        return [name for name in SPLITS if name in names]
    return None


def _class_files(folder: Path) -> dict[str, list[Path]]:
    classes = {sub.name: image_files(sub) for sub in _subfolders(folder)}
    if not classes:
        loose = image_files(folder)
        what = f"holds {len(loose)} images but no class subfolders" if loose else "holds no images"
        raise DataError(f"{folder} {what}; put each class's images in a subfolder named after the class (ImageFolder "
                        "layout: FOLDER/CLASS/image.png)")
    if not any(classes.values()):
        raise DataError(f"no images in {folder}: its folders {', '.join(classes)} hold no .png, .jpg, .bmp, .gif or "
                        ".webp files; add images")
    empty = [name for name, files in classes.items() if not files]
    if empty:
        more = f" (and {len(empty) - 1} more)" if len(empty) > 1 else ""
        raise DataError(f"class folder {folder / empty[0]} has no images{more}; add images or remove the folder")
    return classes


def list_image_folder(root: Path) -> tuple[list[str], list[tuple[Path, str, str | None]], list[str] | None]:
    """(class names, [(file, class, given split)], the given splits or None), in training order."""
    given = _split_layout(root)
    parts = {name: _class_files(root / name) for name in given} if given else {None: _class_files(root)}
    first = parts[given[0]] if given else parts[None]
    names = sorted(first)
    if len(names) < 2:
        where = root / given[0] if given else root
        raise DataError(f"{where} has one class folder ('{names[0]}'); classification needs at least 2: add a "
                        "folder of images per class")
    for split, classes in parts.items():
        unknown = [name for name in classes if name not in first]
        if unknown:
            raise DataError(f"class folder {root / split / unknown[0]} has no counterpart in {root / given[0]}; "
                            "every class must have training images")
    files = [(path, name, split) for split, classes in parts.items() for name in sorted(classes)
             for path in classes[name]]
    return names, files, given


# -- decoding -------------------------------------------------------------------------------------------------------

def _read(path: str) -> tuple[np.ndarray, bool] | str:
    """The file's pixels at its own size, (C, H, W): uint8 ("L" for a grey mode, else "RGB"), or float32 in [0, 1]
    before clipping for 16-bit and float grey; and whether its mode is grey. Or why it cannot be read."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            grey = img.mode in GREY_MODES
            img.seek(0)  # an animation's first frame
            pixels = _pixels(img, 1 if grey else 3)
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for a bad file; each is a bad file here
        return f"{type(exc).__name__}: {exc}"
    return _channels_first(pixels), grey


def _pixels(img, channels: int) -> np.ndarray:
    """(H, W) or (H, W, 3) pixels of an open image: uint8 in `channels`, or float32 for 16-bit and float grey."""
    if img.mode in FLOAT_MODES:  # 16-bit or float grey: "L" would clip at 255
        scale = 1.0 if img.mode == "F" else 65535.0
        return np.asarray(img, dtype=np.float32) / np.float32(scale)
    return np.asarray(img.convert("L" if channels == 1 else "RGB"))


def _channels_first(pixels: np.ndarray) -> np.ndarray:
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def _decode(path: str, size: tuple[int, int], channels: int) -> np.ndarray | str:
    """(C, H, W) pixels at `size` in `channels` (uint8, or float32 for 16-bit and float images, not yet clipped),
    or why decoding failed."""
    from PIL import Image

    height, width = size
    try:
        with Image.open(path) as img:
            img.seek(0)
            if img.format == "JPEG":
                img.draft("L" if channels == 1 else "RGB", (width, height))  # decode at a reduced scale: faster
            if img.mode in FLOAT_MODES:
                img = Image.fromarray(_pixels(img, channels), mode="F")
            else:
                img = img.convert("L" if channels == 1 else "RGB")
            if img.size != (width, height):
                img = img.resize((width, height), Image.Resampling.BILINEAR)
            pixels = np.asarray(img)
    except Exception as exc:  # noqa: BLE001 - as in _read
        return f"{type(exc).__name__}: {exc}"
    return _channels_first(pixels)


def _read_chunk(paths: list[str]) -> list:
    return [_read(p) for p in paths]


def _decode_chunk(job: tuple[list[str], tuple[int, int], int]) -> list:
    paths, size, channels = job
    return [_decode(p, size, channels) for p in paths]


def pool_size(n_files: int) -> int:
    """Processes to decode with: the cores no other process is using (by the 1-minute load), for many files."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if n_files < POOL_MIN_FILES or cores < 2:
        return 1
    idle = cores - os.getloadavg()[0] if hasattr(os, "getloadavg") else cores
    # on a busy machine a pool only adds its start-up and transfers (benchmarks/RESULTS.md, "Image folders")
    return max(1, min(cores, int(idle + 1)))


def _run(fn, jobs: list, n_files: int) -> list:
    """fn over jobs, in order: in a pool of processes when there are many files and idle cores."""
    workers = min(pool_size(n_files), len(jobs))
    if workers < 2:
        return [fn(job) for job in jobs]
    methods = multiprocessing.get_all_start_methods()
    # fork starts a worker in milliseconds; spawn re-imports nnopt (and torch) in each one
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        return list(pool.map(fn, jobs))


def _chunks(items: list[str]) -> list[list[str]]:
    return [items[i:i + CHUNK] for i in range(0, len(items), CHUNK)]


def _decode_all(names: list[str], size: tuple[int, int], channels: int) -> list:
    jobs = [(chunk, size, channels) for chunk in _chunks(names)]
    return [r for chunk in _run(_decode_chunk, jobs, len(names)) for r in chunk]


def decode_images(paths: list[Path], *, size: tuple[int, int] | None = None, channels: int | None = None,
                  strict: bool = False) -> tuple[np.ndarray, list[int], list[str]]:
    """(pixels float32 (n_ok, C, H, W) in [0, 1], positions of the decoded files, ["path: reason", ...] for the rest).

    size None: the files' common size, else DEFAULT_SIZE square. channels None: 1 when every image is grey, else 3.
    strict: the first file that does not decode is a DataError naming it.

    With both given every file is decoded straight to them. Otherwise there is one pass, no header pass: each
    file is decoded at its own size and mode, the size and channels are chosen from what was decoded, and only the
    files at another size (or colour ones for a grey set) are decoded again, converted and resized as above. Workers
    return uint8 pixels; the conversion to float32 in [0, 1] happens once, here."""
    names = [str(p) for p in paths]
    size = None if size is None else (int(size[0]), int(size[1]))
    if size is not None and channels is not None:
        results = _decode_all(names, size, channels)
    else:
        read = [r for chunk in _run(_read_chunk, _chunks(names), len(names)) for r in chunk]
        good = [r for r in read if not isinstance(r, str)]
        if not good:
            _check_bad({i: r for i, r in enumerate(read)}, names, strict)
            raise DataError(f"none of the {len(names)} images decode (e.g. {names[0]}: {read[0]}); check the files")
        if size is None:
            sizes = {pixels.shape[1:] for pixels, _ in good}
            size = sizes.pop() if len(sizes) == 1 else (DEFAULT_SIZE, DEFAULT_SIZE)
        if channels is None:
            channels = 1 if all(grey for _, grey in good) else 3
        results = [r if isinstance(r, str) else r[0] for r in read]
        # a grey image in a colour set is repeated to 3 channels below, as Pillow's convert("RGB") would
        again = [i for i, r in enumerate(results) if not isinstance(r, str)
                 and (r.shape[1:] != size or len(r) > channels)]
        for i, pixels in zip(again, _decode_all([names[i] for i in again], size, channels)):
            results[i] = pixels
    bad = {i: r for i, r in enumerate(results) if isinstance(r, str)}
    _check_bad(bad, names, strict)
    kept = [i for i, r in enumerate(results) if not isinstance(r, str)]
    if not kept:
        raise DataError(f"none of the {len(names)} images decode (e.g. {names[min(bad)]}: {bad[min(bad)]}); check "
                        "the files")
    return _to_float([results[i] for i in kept], size, channels), kept, [f"{names[i]}: {bad[i]}" for i in sorted(bad)]


def _to_float(pixels: list[np.ndarray], size: tuple[int, int], channels: int) -> np.ndarray:
    """The images as one float32 (n, C, H, W) array in [0, 1]: the uint8 ones scaled by 1/255 in one operation (a
    grey one in a colour set repeated to 3 channels, as Pillow's convert("RGB") does), 16-bit and float ones
    clipped."""
    codes = np.zeros((len(pixels), channels, *size), dtype=np.uint8)
    deep = []
    for i, (row, image) in enumerate(zip(codes, pixels)):
        if image.dtype == np.uint8:
            row[...] = image  # (1, H, W) broadcasts to 3 channels
        else:
            deep.append(i)
    X = codes.astype(np.float32)
    X *= np.float32(1 / 255)
    for i in deep:
        X[i] = np.clip(pixels[i], 0.0, 1.0)
    return X


def _check_bad(bad: dict[int, str], names: list[str], strict: bool) -> None:
    if strict and bad:
        first = min(bad)
        raise DataError(f"{names[first]} does not decode as an image ({bad[first]}); fix or remove it, or drop "
                        f"{param('strict', True)} to skip such files ({len(bad)} so far)")


def read_image_folder(root: Path, *, size: tuple[int, int] | None = None, channels: int | None = None,
                      strict: bool = False) -> tuple[Images, list[str], list[str] | None]:
    """An ImageFolder's images with their class folders: (images, class names, the given splits or None)."""
    names, files, given = list_image_folder(root)
    X, kept, skipped = decode_images([f for f, _, _ in files], size=size, channels=channels, strict=strict)
    chosen = [files[i] for i in kept]
    images = Images(X=X, labels=[c for _, c, _ in chosen], splits=[s for _, _, s in chosen] if given else None,
                    paths=[str(f) for f, _, _ in chosen], skipped=skipped)
    return images, names, given


def read_unlabelled(source, *, size: tuple[int, int], channels: int, strict: bool = False) -> Images:
    """Images to predict: a folder (recursively, any layout), one image file, or a list of them, in path order."""
    items = list(source) if isinstance(source, (list, tuple)) else [source]
    paths: list[Path] = []
    for item in items:
        path = Path(item).expanduser()
        if path.is_dir():
            found = image_files(path)
            if not found:
                raise DataError(f"no images in {path} (.png, .jpg, .bmp, .gif, .webp, searched recursively)")
            paths += found
        elif path.is_file():
            paths.append(path)
        else:
            raise DataError(f"file not found: {path}; check the {param('data')} path")
    X, kept, skipped = decode_images(paths, size=size, channels=channels, strict=strict)
    return Images(X=X, labels=None, splits=None, paths=[str(paths[i]) for i in kept], skipped=skipped)


# -- a Data for training ----------------------------------------------------------------------------------------------

def image_split(codes: np.ndarray, splits: list[str] | None, val_fraction: float, test_fraction: float,
                seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, test) positions: the given splits kept, a missing one carved from the given train rows as
    load_data splits any source (seeded, stratified); without given splits, as load_data splits n rows."""
    from nnopt.data._prepare import _split_rows, split_indices

    if splits is None:
        return _split_rows(len(codes), codes, False, val_fraction, test_fraction, seed)
    where = np.asarray(splits)
    train, val, test = (np.flatnonzero(where == split) for split in SPLITS)
    if not len(val):  # as load_data splits a source that ships a test split, or none
        keep, out, held = _split_rows(len(train), codes[train], bool(len(test)), val_fraction, test_fraction, seed)
        train, val, test = train[keep], train[out], (test if held is None else train[held])
    elif not len(test) and test_fraction > 0:
        keep, out = split_indices(len(train), test_fraction, codes[train], seed, "test")
        train, test = train[keep], train[out]
    return train, val, test


def load_image_folder(root: Path, *, image_size=None, strict: bool = False, val_fraction: float, test_fraction: float,
                      seed: int, scale: str, name: str):
    """An ImageFolder as a Data: split as given, or seeded and stratified by the fractions. The decoded pixels are in
    [0, 1] (already divided by their maximum), so they are images like a float (n, C, H, W) array: scale="auto"
    standardizes them per channel with the train split's C means and stds, as image pipelines normalize (left in
    [0, 1], a small BatchNorm network trained for a few epochs can stay near chance); scale="none" keeps [0, 1]."""
    from nnopt.data._prepare import _finish
    from nnopt.data._types import RawData

    images, class_names, given = read_image_folder(root, size=parse_image_size(image_size), strict=strict)
    codes = np.searchsorted(np.asarray(class_names), np.asarray(images.labels)).astype(np.int64)
    n, channels, height, width = images.X.shape
    train, val, test = image_split(codes, images.splits, val_fraction, test_fraction, seed)
    if len(train) == 0:
        raise DataError(f"no training images left in {root / 'train'} (all of them failed to decode)")
    if given is None:
        note = "split by val_fraction / test_fraction"
    else:
        carved = [part for part in ("val", "test") if part not in given]
        note = f"given: {', '.join(given)}" + (f"; {' and '.join(carved)} carved from train by "
                                                f"{' / '.join(p + '_fraction' for p in carved)}" if carved else
                                                "; val_fraction / test_fraction not used")
    X = images.X.reshape(n, -1)
    pixel_names = [f"pixel_{c}_{r}_{k}" if channels > 1 else f"pixel_{r}_{k}"
                   for c in range(channels) for r in range(height) for k in range(width)]
    raw = RawData(X=None, y=codes, source="images", task="classification")
    data = _finish(raw, X, pixel_names, [codes], list(class_names), "classification", (train, val, test), None,
                   name=name, scale=scale, input_shape=(channels, height, width), channels=channels, images=True)
    data.preprocessing["image"] = {"size": [height, width], "channels": channels}
    data.images = {"size": [height, width], "channels": channels, "splits": note, "files": n + len(images.skipped),
                   "skipped": len(images.skipped), "skipped_files": images.skipped[:SHOWN_BAD]}
    return data


def image_rows(source, image: dict, *, labels: bool, strict: bool = False):
    """Rows for a model trained on images (`image`: its recorded size and channels), as load_rows gives them.

    labels=True: an ImageFolder, labelled by class folder, in the order training read it, with the given split of
    each row in `splits` (None without given splits); labels=False: any folder or files, unlabelled, in path
    order. `paths` and `skipped` say which files the rows are."""
    from nnopt.data._types import RawData

    size, channels = tuple(int(d) for d in image["size"]), int(image["channels"])
    if not labels:
        images = read_unlabelled(source, size=size, channels=channels, strict=strict)
        return RawData(X=images.X.reshape(len(images.X), -1), y=None, source="images", paths=images.paths,
                       skipped=images.skipped)
    if not isinstance(source, (str, os.PathLike)) or not Path(source).is_dir():
        raise DataError(f"labelled images come as a folder with one subfolder per class; {source} is not a folder")
    images, _, given = read_image_folder(Path(source).expanduser(), size=size, channels=channels, strict=strict)
    X, y = images.X.reshape(len(images.X), -1), np.asarray(images.labels, dtype=str)
    return RawData(X=X, y=y, source="images", paths=images.paths, skipped=images.skipped, splits=images.splits)
