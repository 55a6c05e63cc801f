"""Stage 11, eval: CCIP over a character set for any models the config names, and its report.

Modules: `characters` (which characters, which reference images), `prompts` and `generate`
(diffusers SDXL sampling), `hfcache` and `standin` (the CCIP model files through the HF cache:
the pinned deepghs/ccip_onnx revision, or a stand-in built offline), `ccip` (imgutils features
and differences), `score` (the score formula), `report` (the self-contained HTML report).
"""
