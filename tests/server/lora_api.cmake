# `inbetween serve --lora-dir` and the job fields of the distilled path (loras, timesteps).
ib_add_test(test_server_loras SOURCES ${CMAKE_CURRENT_LIST_DIR}/lora_api_test.cc LABELS fixture)
target_link_libraries(test_server_loras PRIVATE PkgConfig::HTTPLIB)
add_dependencies(test_server_loras inbetween)
