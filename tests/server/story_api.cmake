# POST /v1/stories: keyframe stories as jobs of `inbetween serve`.
ib_add_test(test_server_stories SOURCES ${CMAKE_CURRENT_LIST_DIR}/story_api_test.cc LABELS fixture)
target_link_libraries(test_server_stories PRIVATE PkgConfig::HTTPLIB)
add_dependencies(test_server_stories inbetween)
