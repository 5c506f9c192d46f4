"""What the command line runs: `serve` (one process or a supervisor of workers), `check` and
`explain`; `loading` reads a configuration file for them, whole and checked."""
