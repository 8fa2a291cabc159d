"""The data plane: resolve, admit, place and run invocations."""
