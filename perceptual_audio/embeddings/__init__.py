"""The embedding models behind one interface (see :class:`Embedder`).

``get_embedder(name, **options)`` builds a model by name (``openl3``, ``vggish``, ``cdpam``);
its ``embed(waveform, sr)`` returns ``(embeddings (T, D) float32, timestamps (T,) seconds)``
and its ``forward`` is differentiable from the waveform. ``model_names()`` lists the models.
"""

from perceptual_audio.embeddings.base import Embedder, get_embedder, model_names, register

__all__ = ["Embedder", "get_embedder", "model_names", "register"]
