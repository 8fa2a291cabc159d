"""The console's pages: one module per page of a function (and the list, and sign-in)."""
