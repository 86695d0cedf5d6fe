"""One module per vendor, each a mapper on its official SDK (see ``rxllm.provider``)."""
