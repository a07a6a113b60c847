if(INBETWEEN_CUDA)
  ib_add_test(test_t5_gpu SOURCES ${CMAKE_CURRENT_LIST_DIR}/t5_gpu_test.cc LABELS gpu)
endif()
