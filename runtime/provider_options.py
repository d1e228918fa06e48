"""The options ONNX Runtime's execution providers take, to catch a misspelt one.

Read from the option strings of the ONNX Runtime GPU 1.31.1 provider libraries
(``strings libonnxruntime_providers_{tensorrt,cuda}.so``). A profile's option is
refused when it belongs to another provider, or when it is unknown and close to
a known one (a typo); another unknown option is passed on, for a newer ONNX
Runtime to take or refuse when the session is built.
"""

from __future__ import annotations

import difflib

_COMMON = {"device_id", "has_user_compute_stream", "user_compute_stream"}
KNOWN: dict[str, set[str]] = {
    "TensorrtExecutionProvider": _COMMON | {
        "trt_auxiliary_streams", "trt_bf16_enable", "trt_build_heuristics_enable",
        "trt_builder_optimization_level", "trt_context_memory_sharing_enable",
        "trt_cuda_graph_enable", "trt_detailed_build_log", "trt_dla_core", "trt_dla_enable",
        "trt_dump_ep_context_model", "trt_dump_subgraphs", "trt_engine_cache_enable",
        "trt_engine_cache_path", "trt_engine_cache_prefix", "trt_engine_decryption_enable",
        "trt_engine_decryption_lib_path", "trt_engine_hw_compatible",
        "trt_ep_context_embed_mode", "trt_ep_context_file_path",
        "trt_external_data_bytestream", "trt_external_data_bytestream_size",
        "trt_extra_plugin_lib_paths", "trt_force_sequential_engine_build",
        "trt_force_timing_cache", "trt_fp16_enable", "trt_int8_calibration_table_name",
        "trt_int8_enable", "trt_int8_use_native_calibration_table",
        "trt_layer_norm_fp32_fallback", "trt_load_user_initializer",
        "trt_max_partition_iterations", "trt_max_workspace_size", "trt_min_subgraph_size",
        "trt_onnx_bytestream", "trt_onnx_bytestream_size", "trt_onnx_model_folder_path",
        "trt_op_types_to_exclude", "trt_preview_features", "trt_profile_max_shapes",
        "trt_profile_min_shapes", "trt_profile_opt_shapes", "trt_sparsity_enable",
        "trt_tactic_sources", "trt_timing_cache_enable", "trt_timing_cache_path",
        "trt_weight_stripped_engine_enable",
    },
    "CUDAExecutionProvider": _COMMON | {
        "arena_extend_strategy", "cudnn_conv1d_pad_to_nc1d", "cudnn_conv_algo_search",
        "cudnn_conv_use_max_workspace", "do_copy_in_default_stream", "enable_cuda_graph",
        "enable_skip_layer_norm_strict_mode", "fuse_conv_bias", "gpu_external_alloc",
        "gpu_external_empty_cache", "gpu_external_free", "gpu_mem_limit", "prefer_nhwc",
        "sdpa_kernel", "tunable_op_enable", "tunable_op_max_tuning_duration_ms",
        "tunable_op_tuning_enable", "use_ep_level_unified_stream", "use_tf32",
    },
    "CPUExecutionProvider": set(),
}  # fmt: skip


def option_problem(provider: str, option: str) -> str | None:
    """Why ``provider`` cannot take ``option`` (with the fix), or None when it may."""
    known = KNOWN.get(provider)
    if known is None or option in known:
        return None
    owners = [name for name, options in KNOWN.items() if option in options]
    if owners:
        return f"'{option}' is an option of {owners[0]}, not of {provider}: move it there"
    close = difflib.get_close_matches(option, sorted(known), n=1, cutoff=0.8)
    if close:
        return f"{provider} has no option '{option}': did you mean {' or '.join(close)}?"
    if not known:
        return f"{provider} takes no options here, not '{option}'"
    return None
