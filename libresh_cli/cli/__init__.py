"""The command-line layer: parse options, call one service function, render the result."""
