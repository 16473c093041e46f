"""ms-swift's template arguments; its `--template` names: each text template whose layout is built in becomes the
tunesmith template that gives the same ids and labels (tests/test_swift_templates.py checks every pair against
ms-swift's own code, in tests/facts/swift_templates.json); ms-swift's other names are refused before anything loads."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tunesmith.config.dialects import swift_options
from tunesmith.config.dialects.base import alias, convert, convert_in_context, fixed, inert, refuse, truthy
from tunesmith.utils.errors import ConfigError

# ms-swift name -> the tunesmith template with the same layout (`swift_*`: ms-swift's own layouts).
SWIFT_TEMPLATES = {
    "default": "swift_default",
    "chatml": "swift_chatml",
    "qwen": "swift_qwen",
    "qwen2_5": "qwen",
    "qwen3": "qwen3",
    "qwen3_thinking": "qwen3_nothink",  # ms-swift trains the answer as written (thoughts kept, none added)
    "qwen3_nothinking": "qwen3_nothink",
    "qwq": "qwen3_nothink",
    "llama": "swift_llama",
    "llama3": "llama3",
    "glm4": "swift_glm4",
    "glm4_5": "swift_glm4_5",
    "chatglm4": "swift_chatglm4",
    "deepseek": "deepseek",
    "deepseek_r1": "deepseek3",  # no empty thought added to answers without one, unlike LLaMA-Factory's
    "deepseek_v3_1": "swift_deepseek_v3_1",
    "gemma": "swift_gemma",
    "gemma3_text": "swift_gemma3_text",
    "phi3": "swift_phi3",
    "phi4": "swift_phi4",
    "yi_coder": "swift_yi_coder",
    "internlm2": "intern2",
    "zephyr": "swift_zephyr",
}
# Mapped templates whose ids or labels differ from ms-swift's with `--loss_scale last_round` (tunesmith's
# mask_history): what ms-swift does there.
_DROPS_THOUGHTS = "drops the earlier answers' thoughts, which the template mapped here keeps"
_EMPTY_THOUGHTS = "gives every earlier answer an empty thought, where mask_history here strips them"
_NEXT_TURN = "leaves the end token opening each later turn unlabelled, which efficient_eos labels here"
LAST_ROUND_DIFFERS = {
    "qwen3_thinking": _DROPS_THOUGHTS,
    "qwq": _DROPS_THOUGHTS,
    "deepseek_r1": _DROPS_THOUGHTS,
    "glm4_5": _EMPTY_THOUGHTS,
    "deepseek_v3_1": _EMPTY_THOUGHTS,
    "glm4": _NEXT_TURN,
    "chatglm4": _NEXT_TURN,
}
# ms-swift text templates refused for a reason of their own.
WHY_NOT = {
    "llama3_2": "which writes the date of the run into every system prompt (Cutting Knowledge Date / Today Date)",
    "mistral_nemo": "which puts the system prompt into the last user turn",
    "baichuan": "which marks turns with the token ids 195/196 of Baichuan's vocabulary",
    "dummy": "a stand-in that renders with the tokenizer's chat template",
}


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Every name ms-swift 4.6 registers, text (with its reward template) or multimodal: the facts file lists them.
SWIFT_TEXT_TEMPLATES = _names(
    """atom aya baichuan baichuan_m1 bert bge_reranker bluelm c4ai chatglm2 chatglm4 chatml codefuse
    codefuse_codellama codegeex4 dbrx deepseek deepseek_coder deepseek_r1 deepseek_v2_5 deepseek_v3_1 deepseek_v4
    deepseek_v4_flash default devstral dots1 dummy ernie ernie_thinking gemma gemma3_text generic_decision glm4
    glm4_5 glm4_7 glm4_z1_rumination glm5_1 glm5_2 glm5_3 gpt_oss hunyuan hunyuan_moe hy_v3 hy_v3_preview internlm
    internlm2 iquestcoder kimi_k2 ling ling2 ling3 llama llama3 llama3_2 longchat longwriter_llama marco_o1 megrez
    mengzi mimo_rl minicpm minicpm5 minicpm5_2b minimax minimax_m1 minimax_m2 minimax_m2_1 minimax_m2_5
    minimax_m2_7 minimax_vl minimind mistral_2501 mistral_nemo modelscope_agent moonlight nemotron_h numina olmoe
    olmoe_0924 openbuddy openbuddy2 orion phi3 phi4 qwen qwen2_5 qwen2_5_math qwen2_5_math_prm qwen3 qwen3_coder
    qwen3_emb qwen3_guard qwen3_nothinking qwen3_reranker qwen3_thinking qwq qwq_preview reflection ring2 ring2_5
    seed_oss skywork skywork_o1 spark2_5 sus telechat telechat2 wizardlm2 wizardlm2_moe xing4_0 xverse yi_coder
    youtu_llm yuan yufeng_xguard zephyr ziya internlm2_reward"""
)
SWIFT_MULTIMODAL_TEMPLATES = _names(
    """chatglm4v clef cogagent_chat cogagent_vqa cogvlm cogvlm2 cogvlm2_video deepseek_janus deepseek_janus_pro
    deepseek_ocr deepseek_ocr2 deepseek_v41 deepseek_vl deepseek_vl2 diffusion_gemma doc_owl2 dots_ocr emu3_chat
    emu3_gen ernie_vl ernie_vl_thinking florence gemma3_vision gemma3n gemma4 gemma4_nothinking glm4_5v glm4v
    glm5_next glm_edge_v glm_ocr got_ocr2 got_ocr2_hf hunyuan_ocr idefics3 interns1 internvl internvl2 internvl2_5
    internvl2_phi3 internvl3_5 internvl3_5_gpt internvl_hf internvl_phi3 ixcomposer2 jev jina_reranker_m0 keye_vl
    keye_vl_1_5 kimi_k25 kimi_k3 kimi_vl llama3_1_omni llama3_2_vision llama3_llava_next llama3_llava_next_hf
    llama4 llava1_5_hf llava1_6_mistral llava1_6_mistral_hf llava1_6_vicuna_hf llava1_6_yi llava1_6_yi_hf
    llava_llama3_1_hf llava_llama3_hf llava_next_qwen llava_next_qwen_hf llava_next_video_hf llava_onevision1_5
    llava_onevision2 llava_onevision_hf megrez_omni midashenglm mimo_v2 mimo_vl minicpmo minicpmo4_5 minicpmv
    minicpmv2_5 minicpmv2_6 minicpmv4 minicpmv4_5 minicpmv4_6 minicpmv4_7 minimax_m3_vl mistral_2503 mistral_2506
    mistral_2512 mistral_2512_thinking molmo molmo2 monkeyocrv2 moss_vl mplug_owl2 mplug_owl3 mplug_owl3_241101
    muse_glimmer omnijev ovis1_6 ovis1_6_llama3 ovis2 ovis2_5 ovis_ocr2 paddle_ocr paddle_ocr_1_5 paligemma
    phi3_vision phi4_multimodal pixtral qvq qwen2_5_omni qwen2_5_vl qwen2_audio qwen2_gme qwen2_vl qwen3_5
    qwen3_5_emb qwen3_8 qwen3_asr qwen3_omni qwen3_tts qwen3_vl qwen3_vl_emb qwen3_vl_reranker qwen_audio qwen_vl
    sail_vl2 step3_vl step_audio step_audio2_mini unlimited_ocr valley wemm_embedding xcomposer2_4khd xcomposer2_5
    yi_vl"""
)
_UNSET = "leave template unset to use the tokenizer's own chat template, which ms-swift's model templates mostly follow"
NOTE = (
    "the built-in template with ms-swift's layout (e.g. default -> swift_default, qwen2_5 -> qwen); ms-swift's "
    "other templates are refused; a name ms-swift lacks is tunesmith's own"
)


def template(value: Any, context: Mapping[str, Any]) -> dict[str, Any]:
    """`--template NAME` -> the tunesmith template laid out as ms-swift's NAME; a name ms-swift does not have
    is taken as tunesmith's own template name (checked when the renderer is built)."""
    name = str(value).strip()
    if name in SWIFT_TEMPLATES:
        base = str(context.get("loss_scale") or "").split("+")[0].strip().lower()
        if base == "last_round" and name in LAST_ROUND_DIFFERS:
            raise ConfigError(
                f"with loss_scale last_round, ms-swift's template {name!r} {LAST_ROUND_DIFFERS[name]}; "
                "use loss_scale default, or leave template unset to use the tokenizer's own chat template"
            )
        return {"template": SWIFT_TEMPLATES[name]}
    if name in SWIFT_MULTIMODAL_TEMPLATES:
        raise ConfigError(
            f"{name!r} is ms-swift's template for a vision/audio-language model, which tunesmith does not train "
            "(it trains text-only causal LMs)"
        )
    if name in SWIFT_TEXT_TEMPLATES:
        why = WHY_NOT.get(name, "whose layout is not built in here")
        raise ConfigError(f"{name!r} is ms-swift's template, {why}; {_UNSET}")
    return {"template": value}


# ms-swift's template arguments (swift/arguments/base_args/template_args.py).
def _preserve_thinking(value: Any) -> dict[str, Any]:
    """ms-swift trains earlier answers with their thoughts (preserve_thinking true, its training default with the
    default loss_scale); false strips them, which tunesmith does only with mask_history (last answer trained)."""
    if value is None or truthy(value):
        return {}
    raise ConfigError(
        "false strips earlier answers' thoughts, which tunesmith does only together with masking them: use "
        "--loss_scale last_round (mask_history), or drop it"
    )


TEMPLATE_ARGUMENTS = {
    "template": convert_in_context(template, NOTE),
    "system": alias("default_system"),
    "agent_template": convert(swift_options.agent_template, "tool_format (hermes: qwen)"),
    "use_chat_template": fixed(
        True, "chat data is always rendered with the template; for plain text use stage: pt"
    ),
    "padding_side": fixed("right", "training pads on the right (generation pads on the left itself)"),
    "sequence_parallel_size": alias("cp_size"),
    "template_backend": fixed(
        "swift",
        "templates are built in (ms-swift's names become the ones with the same layout), or the "
        "tokenizer's own Jinja template when template is unset",
    ),
    "response_prefix": refuse("adds a prefix to every response; put it in the data or the template"),
    "is_binary_loss_scale": refuse("belongs to ms-swift's loss_scale files; use loss_scale"),
    "preserve_thinking": convert(
        _preserve_thinking, "true / unset: earlier answers keep their thoughts, as tunesmith trains them"
    ),
    "enable_thinking": inert(
        "ms-swift applies it to inference prompts only; training rows keep their thoughts as written, as ms-swift "
        "trains them (tunesmith's own enable_thinking, LLaMA-Factory's, also changes the training rows)"
    ),
    "add_non_thinking_prefix": refuse(
        "adds an empty-thinking prefix; tunesmith's templates follow enable_thinking", True
    ),
    "disable_ignore_empty_think": refuse(
        "changes how empty thinking blocks are masked; tunesmith's templates follow enable_thinking", False
    ),
}
