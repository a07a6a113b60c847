ib_add_test(test_models_lora SOURCES ${CMAKE_CURRENT_LIST_DIR}/lora_test.cc LABELS fixture)
if(INBETWEEN_CUDA)
  # The same file with its GPU case (a LoRA refused once the DiT is on the device).
  ib_add_test(test_models_lora_gpu SOURCES ${CMAKE_CURRENT_LIST_DIR}/lora_test.cc LABELS gpu)
  target_compile_definitions(test_models_lora_gpu PRIVATE IB_LORA_GPU_TESTS=1)
  target_compile_options(test_models_lora_gpu PRIVATE -Wno-unused-function)  # helpers of the CPU cases
endif()
