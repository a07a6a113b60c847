# POST /v1/stories: keyframe stories as jobs of `inbetween serve`.
ib_add_test(test_server_stories SOURCES ${CMAKE_CURRENT_LIST_DIR}/story_api_test.cc LABELS fixture)
target_link_libraries(test_server_stories PRIVATE PkgConfig::HTTPLIB)
add_dependencies(test_server_stories inbetween)

# The page's keyframe strip in headless Chromium (IB_NODE: see server.cmake, included before this).
add_test(NAME server_story_browser
  COMMAND ${IB_NODE} ${CMAKE_CURRENT_LIST_DIR}/story_browser_test.mjs
    --inbetween $<TARGET_FILE:inbetween>
    --screenshot ${PROJECT_BINARY_DIR}/server_story_browser_screenshot.png)
set_tests_properties(server_story_browser PROPERTIES LABELS "fixture;browser" TIMEOUT 600 SKIP_RETURN_CODE 77)
