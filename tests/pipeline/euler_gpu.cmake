if(INBETWEEN_CUDA)
  ib_add_test(test_euler_gpu SOURCES ${CMAKE_CURRENT_LIST_DIR}/euler_gpu_test.cc LABELS gpu)
endif()
