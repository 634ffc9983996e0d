package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// describeInput says what the input is: its size compressed and as a tar,
// its entries, and its xz blocks (what the parallel decoder can split).
func describeInput(path string) (string, error) {
	out, err := exec.Command("xz", "--robot", "--list", path).Output()
	if err != nil {
		return "", fmt.Errorf("xz --list %s: %w", path, err)
	}
	var blocks, compressed, tarSize int64
	for _, line := range strings.Split(string(out), "\n") {
		// file  streams  blocks  compressed  uncompressed  ratio  check  padding
		f := strings.Split(line, "\t")
		if len(f) >= 5 && f[0] == "file" {
			blocks, _ = strconv.ParseInt(f[2], 10, 64)
			compressed, _ = strconv.ParseInt(f[3], 10, 64)
			tarSize, _ = strconv.ParseInt(f[4], 10, 64)
		}
	}
	entries, err := countTarEntries(path)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%.1f MB xz in %d blocks, %.1f MB tar, %d entries",
		float64(compressed)/1e6, blocks, float64(tarSize)/1e6, entries), nil
}

func countTarEntries(path string) (int, error) {
	cmd := exec.Command("tar", "-tJf", path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	n := 0
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		n++
	}
	if err := cmd.Wait(); err != nil {
		return 0, fmt.Errorf("tar -t %s: %w", path, err)
	}
	return n, nil
}
