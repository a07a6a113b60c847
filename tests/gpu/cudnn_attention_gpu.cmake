# cuDNN's fused attention against the CPU reference (GPU machine only).
if(INBETWEEN_CUDA)
  ib_add_test(test_cudnn_attention_gpu SOURCES ${CMAKE_CURRENT_LIST_DIR}/cudnn_attention_gpu_test.cc LABELS gpu)
  target_link_libraries(test_cudnn_attention_gpu PRIVATE ib_gpu)
endif()
