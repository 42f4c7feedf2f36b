"""aezoo's commands: argument parsing and one function per action over the services of the
library; `aezoo.apps.main` is the installed `aezoo` command."""
