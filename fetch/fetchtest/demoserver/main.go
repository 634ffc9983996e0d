// Command demoserver runs a fetchtest image server with a few images for
// `make demo`, writes the settings a shell needs to use it to the -env
// file, and serves until SIGINT or SIGTERM.
//
// The env file holds shell assignments, to be sourced with `set -a`:
//
//	LXC_DOWNLOAD_SERVER=127.0.0.1:PORT
//	LXC_DOWNLOAD_KEYRING=/path/to/keyring.asc
//	SSL_CERT_FILE=/path/to/ca.pem
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/lxc/lxc-download/fetch/fetchtest"
)

func main() {
	envFile := flag.String("env", "", "write the server's settings as shell assignments to `FILE`")
	flag.Parse()
	if *envFile == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: demoserver -env FILE")
		os.Exit(2)
	}
	// Ask for the signals before anything exists that would be left
	// behind by dying of one.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	if err := run(*envFile, sigs); err != nil {
		fmt.Fprintf(os.Stderr, "demoserver: %v\n", err)
		os.Exit(1)
	}
}

// demoImages are a few distinct images, so that --list shows a real table.
func demoImages() []fetchtest.Image {
	return []fetchtest.Image{
		fetchtest.DefaultImage(),
		fetchtest.NewImage("debian", "bookworm", "arm64", "default", "20261120_05:26"),
		fetchtest.NewImage("alpine", "3.20", "amd64", "default", "20261121_13:00"),
		fetchtest.NewImage("ubuntu", "noble", "amd64", "default", "20261119_07:42"),
	}
}

// run serves until stop receives, then removes what the server made.
func run(envFile string, stop <-chan os.Signal) error {
	srv, err := fetchtest.NewServer(demoImages()...)
	if err != nil {
		return err
	}
	defer srv.Close()
	env := fmt.Sprintf("LXC_DOWNLOAD_SERVER=%s\nLXC_DOWNLOAD_KEYRING=%s\nSSL_CERT_FILE=%s\n",
		shellQuote(srv.Host), shellQuote(srv.KeyFile), shellQuote(srv.CAFile))
	if err := writeAtomic(envFile, []byte(env)); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "demoserver: serving %d images at %s\n", len(srv.Images()), srv.URL)
	<-stop
	return nil
}

// writeAtomic writes data to name through a temporary file in the same
// directory and a rename, so that a reader polling for name never sees it
// half-written.
func writeAtomic(name string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".*")
	if err != nil {
		return fmt.Errorf("write env file: %w", err)
	}
	_, err = tmp.Write(data)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), name)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write env file: %s: %w", name, err)
	}
	return nil
}

// shellQuote quotes s for a POSIX shell, leaving plain words as they are.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.,:/@+=") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
