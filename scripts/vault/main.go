// Command vault is HashiCorp Vault built from the Go module proxy, for tests
// and local development only: the service never links it. See the README.
package main

import (
	"os"

	"github.com/hashicorp/vault/command"
)

func main() {
	os.Exit(command.Run(os.Args[1:]))
}
