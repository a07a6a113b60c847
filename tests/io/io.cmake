# I/O tests: .pth and safetensors readers, model folder, and bad-input handling.
ib_add_test(test_io_pth_fixture SOURCES ${CMAKE_CURRENT_LIST_DIR}/pth_fixture_test.cc LABELS fixture)
ib_add_test(test_io_pth SOURCES ${CMAKE_CURRENT_LIST_DIR}/pth_test.cc)
ib_add_test(test_io_safetensors SOURCES ${CMAKE_CURRENT_LIST_DIR}/safetensors_test.cc)
ib_add_test(test_io_model_folder SOURCES ${CMAKE_CURRENT_LIST_DIR}/model_folder_test.cc LABELS fixture)
