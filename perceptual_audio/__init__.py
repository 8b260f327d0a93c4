"""perceptual_audio: do neural audio embeddings work as a perceptual loss?

Stages (each behind a thin script at the repository root):
1. :mod:`perceptual_audio.stages.convert` -- any audio to 16 kHz mono WAV (``audio_conversion.py``)
2. :mod:`perceptual_audio.stages.degrade` + :mod:`perceptual_audio.stages.embed` --
   controlled degradations and OpenL3 / VGGish / CDPAM embeddings (``extract_embeddings.py``)
3. :mod:`perceptual_audio.stages.score` -- PESQ, STOI, SI-SDR, embedding similarities and
   their correlations (``calculate_metrics.py``)
4. :mod:`perceptual_audio.stages.visualize` -- figures and reports (``visualize_results.py``)

Plus :mod:`perceptual_audio.loss`, differentiable perceptual losses for training.
"""

__version__ = "0.1.0"
