if(INBETWEEN_CUDA)
  ib_add_test(test_device_to_host_gpu SOURCES ${CMAKE_CURRENT_LIST_DIR}/device_to_host_gpu_test.cc LABELS gpu)
endif()
