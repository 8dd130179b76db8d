// Command kerr is the unprivileged command-line front end of the kerr container runtime.
package main

import (
	"os"

	"github.com/kerr-hpc/kerr/frontend/cli"
)

func main() {
	os.Exit(cli.Main(os.Args))
}
