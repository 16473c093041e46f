"""LLaMA-Factory's template names tunesmith does not build in, written from tests/facts/lf_templates.json (made by
scripts/lf_template_facts.py from LLaMA-Factory's own registry; tests/test_data_templates_lf.py checks they agree),
so that `template:` says what such a name is instead of "unknown"."""

from __future__ import annotations

# registered with a multimodal plugin: templates of vision/audio-language models
LF_MULTIMODAL_TEMPLATES = frozenset(
    [
        "dots_ocr",
        "ernie_vl",
        "gemma3",
        "gemma3n",
        "gemma4",
        "gemma4n",
        "glm4_5v",
        "glm4v",
        "glm_ocr",
        "granite3_vision",
        "intern_s1",
        "intern_vl",
        "keye_vl",
        "kimi_vl",
        "lfm2_vl",
        "llama4",
        "llava",
        "llava_next",
        "llava_next_llama3",
        "llava_next_mistral",
        "llava_next_qwen",
        "llava_next_video",
        "llava_next_video_mistral",
        "llava_next_video_yi",
        "llava_next_yi",
        "mimo_vl",
        "minicpm_o",
        "minicpm_v",
        "minicpm_v_4_6",
        "ministral3",
        "mistral_small",
        "mllama",
        "moss_vl",
        "paligemma",
        "paligemma_chat",
        "pixtral",
        "qwen2_audio",
        "qwen2_omni",
        "qwen2_vl",
        "qwen3_omni",
        "qwen3_omni_nothink",
        "qwen3_vl",
        "qwen3_vl_nothink",
        "video_llava",
        "yi_vl",
        "youtu_vl",
    ]
)
# text templates of a newer LLaMA-Factory than the release the built-in ones were checked against
LF_TEXT_TEMPLATES = frozenset(("hy_dense_1_8b", "hy_dense_7b"))
