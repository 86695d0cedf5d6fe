pytest_plugins = ["rxllm.testing"]
