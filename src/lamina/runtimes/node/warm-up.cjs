// Loaded once by a runtime started ahead, while it waits (see bootstrap.cjs's warmUp).
exports.handler = async () => null;
