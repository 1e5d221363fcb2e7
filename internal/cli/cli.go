// Package cli parses the command lines of the registry's commands the same
// way: a standard flag set, -h/--help that prints the usage and exits 0
// without starting or changing anything, --version, and no stray arguments.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/connreg/registry/internal/buildinfo"
)

// Command is one command line: its name, a usage line and a description
// printed by --help, and its flags.
type Command struct {
	Name        string
	Usage       string // e.g. "api [flags]"
	Description string // what it does and which environment it reads
	Flags       *flag.FlagSet
}

// New returns a command whose flag set reports errors instead of exiting.
func New(name, usage, description string) *Command {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	return &Command{Name: name, Usage: usage, Description: description, Flags: fs}
}

// Parse parses args. It returns exit=true when the process must end now with
// code: 0 after --help or --version, 2 after a usage error (printed to
// stderr with the usage). Positional arguments are refused unless
// allowArgs.
func (c *Command) Parse(args []string, stdout, stderr io.Writer, allowArgs bool) (code int, exit bool) {
	version := c.Flags.Bool("version", false, "print the build's version and exit")
	c.Flags.SetOutput(io.Discard) // usage goes where the caller asked for it, below
	err := c.Flags.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		c.PrintUsage(stdout)
		return 0, true
	case err != nil:
		fmt.Fprintf(stderr, "%s: %v\n", c.Name, err)
		c.PrintUsage(stderr)
		return 2, true
	case *version:
		fmt.Fprintln(stdout, c.Name, buildinfo.Read())
		return 0, true
	case !allowArgs && c.Flags.NArg() > 0:
		fmt.Fprintf(stderr, "%s: unexpected argument %q\n", c.Name, c.Flags.Arg(0))
		c.PrintUsage(stderr)
		return 2, true
	}
	return 0, false
}

// PrintUsage writes the usage line, the description and the flags.
func (c *Command) PrintUsage(w io.Writer) {
	fmt.Fprintf(w, "usage: %s\n\n%s\n\nflags:\n", c.Usage, c.Description)
	c.Flags.SetOutput(w)
	c.Flags.PrintDefaults()
	c.Flags.SetOutput(io.Discard)
}
