# cuDNN's fused attention against the CPU reference (GPU machine only).
if(INBETWEEN_CUDA)
  ib_add_test(test_cudnn_attention_gpu SOURCES ${CMAKE_CURRENT_LIST_DIR}/cudnn_attention_gpu_test.cc LABELS gpu)
  target_link_libraries(test_cudnn_attention_gpu PRIVATE ib_gpu)
endif()
# The fp8 attention: quantisation bits, dequantisation, cuDNN's fp8 kernel against the CPU composition.
if(INBETWEEN_CUDA)
  ib_add_test(test_attention_fp8_gpu SOURCES ${CMAKE_CURRENT_LIST_DIR}/attention_fp8_gpu_test.cc LABELS gpu)
  target_link_libraries(test_attention_fp8_gpu PRIVATE ib_gpu)
endif()
