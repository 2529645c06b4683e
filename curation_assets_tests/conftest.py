pytest_plugins = ["curation_assets_tests.s3_server", "curation_assets_tests.servers"]
