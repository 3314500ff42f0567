"""The compiled-model cache: a run that finds its TFLite model here never imports TensorFlow.

Compiling MobileNetV2 (build the Keras model, set its weights, convert it) costs ~16 s and needs
TensorFlow; the flatbuffer it yields depends only on the entry's key: the weights' identity, the image
size and the converter's version. One entry is two files under the cache folder:

    <cache>/<key>.tflite     the flatbuffer
    <cache>/<key>.json       its manifest: the key's parts, the model's fingerprint, the flatbuffer's
                             size and sha256; written last, so an entry exists once its manifest does

A manifest that cannot be read, whose parts differ from the key's, or whose flatbuffer has another
checksum or input shape is logged and rebuilt, never used. Local folders are written through a
temporary file and a rename (no half file is ever visible); object stores (S3) make each PUT visible
whole. The key's parts are read from the installed packages' metadata, which imports nothing.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import fruits_contract
from fruits_contract import MODEL_CACHE_FORMAT, model_cache_entry
from fruits_spark.errors import JobInputError
from fruits_spark.model import IMAGENET, RANDOM, CompiledModel

if TYPE_CHECKING:
    from fruits_spark.storage import HadoopFs

log = logging.getLogger(__name__)

# The default cache folder of runs that pass no --model-cache (the tests point it at one folder per session).
MODEL_CACHE_ENV = "FRUITS_MODEL_CACHE"
SOURCE_CACHE, SOURCE_COMPILED = "cache", "compiled"

_CONVERTER_DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu")
# The outputs a compiled headless MobileNetV2 must have, checked on every entry read.
_FEATURE_LENGTH = 1280


def default_cache_dir() -> str:
    """``$FRUITS_MODEL_CACHE``, else ``$XDG_CACHE_HOME/fruits-pipeline/models``, else ``~/.cache/...``."""
    explicit = os.environ.get(MODEL_CACHE_ENV)
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(base) / "fruits-pipeline" / "models")


def installed_version(*distributions: str) -> str | None:
    for name in distributions:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


@dataclass(frozen=True)
class CacheKey:
    """Everything the compiled flatbuffer depends on.

    :param weights_identity: ``imagenet-keras<version>``, ``none-seed<seed>`` or ``file-sha256-<hash>``.
    :param converter: the TensorFlow version whose converter compiles it.
    """

    weights_identity: str
    image_size: int
    converter: str

    @property
    def name(self) -> str:
        return model_cache_entry(
            weights_identity=self.weights_identity, image_size=self.image_size, converter=self.converter
        )


def weights_identity(weights: str, read_weights_file: Any) -> str:
    """What names the weights: Keras's version for ImageNet's, the seed for random ones, a file's content hash.

    :param read_weights_file: returns the bytes of a weights file, given ``--weights``.
    """
    if weights in (IMAGENET, RANDOM):
        return fruits_contract.weights_identity(weights, keras_version=installed_version("keras"))
    digest = hashlib.sha256(read_weights_file(weights)).hexdigest()
    return fruits_contract.weights_identity(weights, keras_version=None, file_sha256=digest)


class _Store(Protocol):
    def names(self) -> list[str]: ...

    def read(self, name: str) -> bytes | None: ...

    def write(self, name: str, data: bytes) -> None: ...


class LocalStore:
    """A local folder; each file is written beside its final name and renamed into place."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder.removeprefix("file://").removeprefix("file:"))

    def names(self) -> list[str]:
        return sorted(path.name for path in self.folder.glob("*")) if self.folder.is_dir() else []

    def read(self, name: str) -> bytes | None:
        try:
            return (self.folder / name).read_bytes()
        except FileNotFoundError:
            return None

    def write(self, name: str, data: bytes) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{name}.", dir=self.folder)
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(data)
            os.replace(temporary, self.folder / name)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


class HadoopStore:
    """A folder of an object store (``s3://``) through Hadoop's FileSystem: each PUT appears whole."""

    def __init__(self, uri: str, fs: HadoopFs) -> None:
        self.uri = uri.rstrip("/")
        self._fs = fs

    def names(self) -> list[str]:
        if self._fs.kind(self.uri) != "dir":
            return []
        return sorted(entry.path.rsplit("/", 1)[-1] for entry in self._fs.list_files(self.uri))

    def read(self, name: str) -> bytes | None:
        uri = f"{self.uri}/{name}"
        try:
            return self._fs.read_bytes(uri) if self._fs.exists(uri) else None
        except OSError:
            raise
        except Exception as error:  # py4j's Py4JJavaError around the JVM's IOException (access denied...)
            raise OSError(str(error).strip().splitlines()[0]) from None

    def write(self, name: str, data: bytes) -> None:
        self._fs.write_bytes(f"{self.uri}/{name}", data)


def open_store(uri: str, fs: HadoopFs | None) -> _Store:
    if "://" not in uri or uri.startswith("file:"):
        return LocalStore(uri)
    if fs is None:
        raise ValueError(f"{uri} needs Hadoop's FileSystem")
    return HadoopStore(uri, fs)


class UnusableEntryError(Exception):
    """A cache entry that must not be used; the message says why."""


def _manifest(key: CacheKey, model: CompiledModel) -> dict[str, Any]:
    return {
        "format": MODEL_CACHE_FORMAT,
        **asdict(key),
        "weights": model.weights,
        "fingerprint": model.fingerprint,
        "bytes": len(model.tflite),
        "sha256": hashlib.sha256(model.tflite).hexdigest(),
    }


def _check_flatbuffer(tflite: bytes, image_size: int) -> None:
    """The model's input and output shapes, read by LiteRT (which the executors need anyway)."""
    from ai_edge_litert.interpreter import Interpreter

    try:
        interpreter = Interpreter(model_content=tflite)
    except Exception as error:
        raise UnusableEntryError(f"LiteRT cannot load it ({str(error).strip().splitlines()[0]})") from None
    input_shape = list(interpreter.get_input_details()[0]["shape"])
    output_shape = list(interpreter.get_output_details()[0]["shape"])
    if input_shape[1:] != [image_size, image_size, 3] or output_shape[-1:] != [_FEATURE_LENGTH]:
        raise UnusableEntryError(
            f"its input is {input_shape}, its output {output_shape}: not a {image_size}px MobileNetV2"
        )


def read_entry(store: _Store, key: CacheKey, weights: str) -> CompiledModel | None:
    """The entry's model; None when there is none.

    :raises UnusableEntryError: when the entry is there but unusable.
    """
    raw = store.read(f"{key.name}.json")
    if raw is None:
        return None
    try:
        manifest = json.loads(raw)
        expected = {"format": MODEL_CACHE_FORMAT, **asdict(key)}
        recorded = {name: manifest[name] for name in expected}
        fingerprint, digest = str(manifest["fingerprint"]), str(manifest["sha256"])
    except (ValueError, KeyError, TypeError) as error:
        raise UnusableEntryError(f"its manifest is not readable ({type(error).__name__}: {error})") from None
    if recorded != expected:
        raise UnusableEntryError(f"its manifest names another model ({recorded}, expected {expected})")
    tflite = store.read(f"{key.name}.tflite")
    if tflite is None:
        raise UnusableEntryError("its flatbuffer is missing")
    if hashlib.sha256(tflite).hexdigest() != digest:
        raise UnusableEntryError(f"its flatbuffer's sha256 differs from the manifest's ({len(tflite)} bytes)")
    _check_flatbuffer(tflite, key.image_size)
    return CompiledModel(tflite, fingerprint, weights, key.image_size)


def write_entry(store: _Store, key: CacheKey, model: CompiledModel) -> None:
    """The flatbuffer first, the manifest last: a reader sees the entry only once it is whole."""
    store.write(f"{key.name}.tflite", model.tflite)
    store.write(f"{key.name}.json", json.dumps(_manifest(key, model), indent=2).encode())


def load_or_compile(
    weights: str, image_size: int, cache_uri: str, fs: HadoopFs | None = None, *, imagenet_weights: str | None = None
) -> tuple[CompiledModel, str]:
    """The model ``--weights`` and ``--image-size`` name, from ``cache_uri`` when it holds it, else compiled
    (TensorFlow imported only then) and stored there for the next run; and ``cache`` or ``compiled``.

    :param cache_uri: a local folder or ``s3://`` prefix; created on first write.
    :param fs: reads ``s3://`` caches and weights URIs; None for local paths only.
    :param imagenet_weights: Keras's ImageNet weights file to compile ``imagenet`` with, instead of Keras's
        cache or download.
    """
    from fruits_spark.model import compile_model, read_weights_file

    store = open_store(cache_uri, fs)
    identity = weights_identity(weights, lambda uri: read_weights_file(uri, fs))
    converter = installed_version(*_CONVERTER_DISTRIBUTIONS)
    if converter is None:
        return _newest_without_converter(store, cache_uri, identity, weights, image_size), SOURCE_CACHE
    key = CacheKey(identity, image_size, converter)
    location = f"{cache_uri.rstrip('/')}/{key.name}"
    try:
        cached = read_entry(store, key, weights)
    except UnusableEntryError as reason:
        log.warning("model cache entry %s is unusable: %s; compiling it again", location, reason)
        cached = None
    except OSError as error:  # an unreachable or forbidden cache costs a compile, not the run
        log.warning("model cache entry %s cannot be read (%s); compiling the model", location, error)
        cached = None
    if cached is not None:
        log.info("model from cache: %s (fingerprint %s)", location, cached.fingerprint)
        return cached, SOURCE_CACHE
    model = compile_model(weights, image_size, fs, imagenet_weights=imagenet_weights)
    try:
        write_entry(store, key, model)
    except Exception as error:  # the run goes on without the cache; the next one compiles again
        log.warning("model compiled but not cached at %s: %s", location, str(error).strip().splitlines()[0])
        return model, SOURCE_COMPILED
    log.info("compiled and cached: %s (fingerprint %s)", location, model.fingerprint)
    return model, SOURCE_COMPILED


def _version_order(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def _newest_without_converter(
    store: _Store, cache_uri: str, identity: str, weights: str, image_size: int
) -> CompiledModel:
    """Where TensorFlow is not installed (a node that compiles nothing): the newest converter's usable entry."""
    prefix, suffix = model_cache_entry(weights_identity=identity, image_size=image_size, converter="|").split("|")
    suffix += ".json"
    names = [name for name in store.names() if name.startswith(prefix) and name.endswith(suffix)]
    converters = [name[len(prefix) : -len(suffix)] for name in names]
    for converter in sorted((c for c in converters if c), key=_version_order, reverse=True):
        key = CacheKey(identity, image_size, converter)
        try:
            model = read_entry(store, key, weights)
        except UnusableEntryError as reason:
            log.warning("model cache entry %s/%s is unusable: %s", cache_uri.rstrip("/"), key.name, reason)
            continue
        if model is not None:
            log.info("model from cache: %s/%s (fingerprint %s)", cache_uri.rstrip("/"), key.name, model.fingerprint)
            return model
    raise JobInputError(
        f"--model-cache {cache_uri} holds no usable {image_size}px model for --weights {weights}, and TensorFlow "
        "is not installed here to compile one; run once where TensorFlow is installed to fill the cache"
    )
