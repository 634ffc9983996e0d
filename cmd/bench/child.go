package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"

	"github.com/lxc/lxc-download/cache"
)

// childUnpack, as the first argument, makes this program the child that
// unpacks in-process: childUnpack WORKERS INPUT ROOTFS.
const childUnpack = "-child-unpack"

// unpackChild unpacks INPUT into ROOTFS with cache.Unpack and returns the
// exit status.
func unpackChild(args []string) int {
	if len(args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: bench", childUnpack, "WORKERS INPUT ROOTFS")
		return 2
	}
	workers, err := strconv.Atoi(args[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	if workers > 0 {
		runtime.GOMAXPROCS(workers)
	}
	if err := unpack(args[1], args[2], workers); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	return 0
}

func unpack(input, rootfs string, workers int) error {
	f, err := os.Open(input)
	if err != nil {
		return err
	}
	defer f.Close()
	return cache.Unpack(context.Background(), f, rootfs, cache.UnpackOptions{Workers: workers, Warn: os.Stderr})
}
