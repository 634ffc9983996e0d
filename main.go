// Command lxc-download is a drop-in replacement for LXC's "download"
// template: it fetches a verified image from an image server, keeps it in a
// local cache and unpacks it into a container's root filesystem, with no
// external tools on the host.
//
// lxc-create runs it as its template:
//
//	lxc-create -t download -n c1 -- -d debian -r bookworm -a amd64
//
// See README.md and man/lxc-download.1 for everything else.
package main

import (
	"os"

	"github.com/lxc/lxc-download/cmd"
)

func main() {
	os.Exit(cmd.Main(os.Args, cmd.Stdio()))
}
