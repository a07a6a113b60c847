# The tensor-core attention (src/gpu/attention.h): flash kernel and back-end choice, on the GPU.
if(INBETWEEN_CUDA)
  ib_add_test(test_flash_attention_gpu SOURCES ${CMAKE_CURRENT_LIST_DIR}/flash_attention_gpu_test.cc LABELS gpu)
  target_link_libraries(test_flash_attention_gpu PRIVATE ib_gpu)
endif()
