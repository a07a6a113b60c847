if(INBETWEEN_CUDA)
  ib_add_test(test_ops_linear_gpu SOURCES ${CMAKE_CURRENT_LIST_DIR}/linear_gpu_test.cc LABELS gpu)
endif()
