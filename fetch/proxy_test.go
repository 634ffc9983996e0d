package fetch_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/lxc/lxc-download/compat"
	"github.com/lxc/lxc-download/fetch"
)

// Proxies come from the environment, which net/http reads once per
// process: each case runs TestProxyChild in a child process of its own.

const proxyChildEnv = "LXCDL_PROXY_CHILD"

// connectProxy is an HTTP proxy that tunnels CONNECT requests to target
// and logs the host each asked for.
type connectProxy struct {
	target string
	mu     sync.Mutex
	asked  []string
}

func (p *connectProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.asked = append(p.asked, r.Method+" "+r.Host)
	p.mu.Unlock()
	if r.Method != http.MethodConnect {
		http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
		return
	}
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer up.Close()
	conn, buf, err := w.(http.Hijacker).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n")
	go io.Copy(up, buf)
	io.Copy(conn, up)
}

func (p *connectProxy) log() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.asked...)
}

func TestProxyFromEnvironment(t *testing.T) {
	// httptest's certificate is valid for example.com, a name that is not
	// a loopback address, which net/http never sends through a proxy.
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "debian;bookworm;amd64;default;1;/images/debian/\n")
	}))
	defer srv.Close()
	direct := srv.Listener.Addr().String()
	_, port, _ := net.SplitHostPort(direct)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		name    string
		env     []string
		proxied bool
	}{
		{"lower case", []string{"https_proxy=$URL"}, true},
		{"upper case", []string{"HTTPS_PROXY=$URL"}, true},
		{"no_proxy", []string{"https_proxy=$URL", "no_proxy=example.com"}, false},
		{"NO_PROXY", []string{"HTTPS_PROXY=$URL", "NO_PROXY=.com"}, false},
		{"http_proxy only", []string{"http_proxy=$URL"}, false},
		{"none", nil, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			proxy := &connectProxy{target: direct}
			ps := httptest.NewServer(proxy)
			defer ps.Close()
			cmd := exec.Command(os.Args[0], "-test.run=^TestProxyChild$", "-test.v")
			for _, kv := range os.Environ() {
				if !strings.Contains(strings.ToLower(strings.SplitN(kv, "=", 2)[0]), "proxy") {
					cmd.Env = append(cmd.Env, kv)
				}
			}
			for _, kv := range c.env {
				cmd.Env = append(cmd.Env, strings.ReplaceAll(kv, "$URL", ps.URL))
			}
			cmd.Env = append(cmd.Env, proxyChildEnv+"="+strings.Join([]string{"example.com:" + port, direct, caFile}, ","))
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "--- PASS: TestProxyChild") {
				t.Fatalf("child: %v\n%s", err, out)
			}
			log := proxy.log()
			if c.proxied && (len(log) == 0 || log[0] != "CONNECT example.com:"+port) {
				t.Errorf("proxy log %q", log)
			}
			if !c.proxied && len(log) != 0 {
				t.Errorf("went through the proxy: %q", log)
			}
		})
	}
}

// TestProxyChild is the client side of TestProxyFromEnvironment.
func TestProxyChild(t *testing.T) {
	args := strings.Split(os.Getenv(proxyChildEnv), ",")
	if len(args) != 3 {
		t.Skip("run by TestProxyFromEnvironment")
	}
	server, direct, caFile := args[0], args[1], args[2]
	pemData, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemData)
	c, err := fetch.New(fetch.Options{
		Server:  server,
		RootCAs: pool,
		// example.com is the test server when asked for directly.
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if addr == server {
				addr = direct
			}
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ix, err := c.Index(context.Background(), compat.System)
	if err != nil {
		t.Fatal(err)
	}
	if len(ix.Entries) != 1 {
		t.Fatalf("%+v", ix)
	}
}
