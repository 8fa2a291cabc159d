"""`lamina dev DIR`: deploy a function from a directory and redeploy it on every save."""
