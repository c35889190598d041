package proxy_test

import (
	"bytes"
	"context"
	"crypto/sha1"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gomysql "github.com/go-mysql-org/go-mysql/client"
	mysqlconst "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/sluice-proxy/sluice/internal/testenv/lab"
	"github.com/sluice-proxy/sluice/proxy"
)

func TestQueriesThroughProxy(t *testing.T) {
	s := startSluice(t, proxy.Config{})
	db := s.open(t, "app", "apppass", "app")
	mustExec(t, db, "DROP TABLE IF EXISTS basic")
	mustExec(t, db, "CREATE TABLE basic (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(64), n INT)")
	res := mustExec(t, db, "INSERT INTO basic (name, n) VALUES ('a', 1), ('b', 2), ('c', 3)")
	if n, _ := res.RowsAffected(); n != 3 {
		t.Fatalf("rows affected = %d, want 3", n)
	}
	if id, _ := res.LastInsertId(); id != 1 {
		t.Fatalf("last insert id = %d, want 1", id)
	}
	// Prepared statement through the binary protocol (interpolateParams is off).
	var name string
	if err := db.QueryRow("SELECT name FROM basic WHERE n = ?", 2).Scan(&name); err != nil || name != "b" {
		t.Fatalf("prepared select: %q, %v", name, err)
	}
	var sum int
	if err := db.QueryRow("SELECT SUM(n) FROM basic").Scan(&sum); err != nil || sum != 6 {
		t.Fatalf("sum = %d, %v", sum, err)
	}
	// A server error reaches the client with its own code, state and message.
	_, err := db.Exec("SELEC broken")
	if sqlErrCode(err) != 1064 || !strings.Contains(err.Error(), "SQL syntax") {
		t.Fatalf("syntax error = %v, want 1064", err)
	}
	_, err = db.Exec("INSERT INTO nosuchtable VALUES (1)")
	if sqlErrCode(err) != 1146 {
		t.Fatalf("missing table error = %v, want 1146", err)
	}
	// Transactions, with the session's status tracked from OK packets.
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec("UPDATE basic SET n = n + 10"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow("SELECT SUM(n) FROM basic").Scan(&sum); err != nil || sum != 6 {
		t.Fatalf("after rollback sum = %d, %v", sum, err)
	}
	// An empty result set and NULLs.
	rows, err := db.Query("SELECT name, NULL FROM basic WHERE n > 100")
	if err != nil {
		t.Fatal(err)
	}
	if rows.Next() {
		t.Fatal("want no rows")
	}
	rows.Close()
	if err := db.Ping(); err != nil {
		t.Fatalf("COM_PING: %v", err)
	}
}

func TestMultiStatementsAndResults(t *testing.T) {
	s := startSluice(t, proxy.Config{})
	db, err := sql.Open("mysql", s.dsn("app", "apppass", "app", map[string]string{"multiStatements": "true"}))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	mustExec(t, db, "DROP PROCEDURE IF EXISTS two_results; CREATE PROCEDURE two_results() BEGIN SELECT 1 AS a; SELECT 2 AS b, 3 AS c; END")
	rows, err := db.Query("CALL two_results()")
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for {
		for rows.Next() {
			cols, _ := rows.Columns()
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			for _, v := range vals {
				n, _ := strconv.Atoi(fmt.Sprintf("%s", v))
				if i, ok := v.(int64); ok {
					n = int(i)
				}
				got = append(got, n)
			}
		}
		if !rows.NextResultSet() {
			break
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	if fmt.Sprint(got) != "[1 2 3]" {
		t.Fatalf("results = %v, want [1 2 3]", got)
	}
	// The session goes on normally after multi-results.
	var one int
	if err := db.QueryRow("SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("after CALL: %d %v", one, err)
	}
	// An error in the middle of a multi-statement ends it with that error.
	_, err = db.Exec("SELECT 1; SELECT * FROM nosuchtable; SELECT 3")
	if sqlErrCode(err) != 1146 {
		t.Fatalf("multi-statement error = %v, want 1146", err)
	}
	if err := db.QueryRow("SELECT 1").Scan(&one); err != nil {
		t.Fatalf("after failed multi-statement: %v", err)
	}
}

func TestAuthentication(t *testing.T) {
	s := startSluice(t, proxy.Config{}, proxy.NewConfigAccount("cfguser", "%", "cfgpass"))
	cases := []struct {
		user, pass string
		wantCode   uint16
	}{
		{"app", "apppass", 0},
		{"app", "wrong", 1045},
		{"app", "", 1045},
		{"nosuchuser", "x", 1045},
		{"nopass", "", 0},
		{"nopass", "something", 1045},
		{"local", "localpass", 0},      // 'local'@'127.0.0.1' matches
		{"otherhost", "x", 1045},       // 'otherhost'@'10.9.9.9' does not
		{"cfguser", "wrongpass", 1045}, // config account, wrong password
	}
	for _, c := range cases {
		t.Run(c.user+"/"+c.pass, func(t *testing.T) {
			db, err := sql.Open("mysql", s.dsn(c.user, c.pass, "", nil))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			err = db.Ping()
			if sqlErrCode(err) != c.wantCode {
				t.Fatalf("login %s: err = %v, want code %d", c.user, err, c.wantCode)
			}
			if c.wantCode == 1045 && !strings.Contains(err.Error(), "Access denied for user '"+c.user+"'") {
				t.Fatalf("message = %q", err)
			}
		})
	}
	// An unknown database is refused at login with the server's own error.
	db := s.open(t, "app", "apppass", "nosuchdb")
	if err := db.Ping(); sqlErrCode(err) != 1049 {
		t.Fatalf("unknown db: %v, want 1049", err)
	}
}

func TestAccountsReloadAfterCreateUser(t *testing.T) {
	s := startSluice(t, proxy.Config{})
	ctx := context.Background()
	if err := topo.Primary.Exec(ctx, "CREATE OR REPLACE USER 'fresh'@'%' IDENTIFIED BY 'freshpass'"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { topo.Primary.Exec(ctx, "DROP USER IF EXISTS 'fresh'@'%'") })
	// Sluice has not seen the account: the failed lookup reloads the accounts.
	db := s.open(t, "fresh", "freshpass", "")
	if err := db.Ping(); err != nil {
		t.Fatalf("new account through the proxy: %v", err)
	}
}

func TestMariadbCLIAndLocalInfile(t *testing.T) {
	cli, err := exec.LookPath("mariadb")
	if err != nil {
		t.Skip("mariadb client not installed")
	}
	s := startSluice(t, proxy.Config{})
	host, port, _ := net.SplitHostPort(s.addr)
	if err := topo.Primary.Exec(context.Background(), "SET GLOBAL local_infile = 1"); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "rows.csv")
	var data bytes.Buffer
	for i := range 5000 {
		fmt.Fprintf(&data, "%d,row-%d\n", i, i)
	}
	if err := os.WriteFile(file, data.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf(`DROP TABLE IF EXISTS infile_rows;
CREATE TABLE infile_rows (id INT PRIMARY KEY, v VARCHAR(32));
LOAD DATA LOCAL INFILE '%s' INTO TABLE infile_rows FIELDS TERMINATED BY ',';
SELECT COUNT(*), MAX(id) FROM infile_rows;`, file)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, cli, "--protocol=TCP", "-h", host, "-P", port, "-u", "app", "-papppass",
		"--local-infile=1", "-N", "-B", "app", "-e", script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("mariadb: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "5000\t4999" {
		t.Fatalf("LOAD DATA LOCAL INFILE through the proxy: got %q", got)
	}
}

func TestLargePackets(t *testing.T) {
	s := startSluice(t, proxy.Config{})
	db := s.open(t, "app", "apppass", "app")
	mustExec(t, db, "DROP TABLE IF EXISTS blobs")
	mustExec(t, db, "CREATE TABLE blobs (id INT PRIMARY KEY, b LONGBLOB)")
	// 20 MiB: more than one 16 MiB packet both ways, and an exact multiple.
	for i, size := range []int{20 << 20, 1<<24 - 1, 1<<24 - 1 - 29} {
		payload := bytes.Repeat([]byte{byte('a' + i)}, size)
		payload[size/2] = 'Z'
		mustExec(t, db, "INSERT INTO blobs VALUES (?, ?)", i, payload)
		var got []byte
		if err := db.QueryRow("SELECT b FROM blobs WHERE id = ?", i).Scan(&got); err != nil {
			t.Fatalf("read back %d bytes: %v", size, err)
		}
		if !bytes.Equal(got, payload) {
			t.Fatalf("blob of %d bytes came back as %d bytes, different", size, len(got))
		}
		// The text protocol too.
		var n int
		if err := db.QueryRow(fmt.Sprintf("SELECT LENGTH(b) FROM blobs WHERE id = %d", i)).Scan(&n); err != nil || n != size {
			t.Fatalf("length %d, %v", n, err)
		}
	}
}

func TestPacketTooLarge(t *testing.T) {
	s := startSluice(t, proxy.Config{MaxAllowedPacket: 1 << 20})
	db := s.open(t, "app", "apppass", "")
	big := strings.Repeat("x", 2<<20)
	_, err := db.Exec("SELECT '" + big + "'")
	if err == nil {
		t.Fatal("a 2 MiB query passed a 1 MiB max_allowed_packet")
	}
	// Other sessions are unaffected.
	other := s.open(t, "app", "apppass", "")
	if err := other.Ping(); err != nil {
		t.Fatal(err)
	}
}

// rawLogin opens a go-mysql client connection: a second, independent client
// implementation, which also lets tests send raw commands.
func rawLogin(t *testing.T, s *sluice, user, pass, db string) *gomysql.Conn {
	t.Helper()
	c, err := gomysql.Connect(s.addr, user, pass, db)
	if err != nil {
		t.Fatalf("go-mysql connect: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestOtherCommands(t *testing.T) {
	s := startSluice(t, proxy.Config{})
	c := rawLogin(t, s, "app", "apppass", "")
	// COM_INIT_DB
	if err := c.UseDB("app"); err != nil {
		t.Fatalf("COM_INIT_DB: %v", err)
	}
	if _, err := c.Execute("CREATE TABLE IF NOT EXISTS fl (a INT, b VARCHAR(3))"); err != nil {
		t.Fatal(err)
	}
	// COM_FIELD_LIST
	fields, err := c.FieldList("fl", "")
	if err != nil || len(fields) != 2 || string(fields[1].Name) != "b" {
		t.Fatalf("COM_FIELD_LIST: %v %v", fields, err)
	}
	// COM_PING
	if err := c.Ping(); err != nil {
		t.Fatalf("COM_PING: %v", err)
	}
	// COM_STATISTICS answers with one string.
	c.ResetSequence()
	if err := c.WritePacket([]byte{0, 0, 0, 0, mysqlconst.COM_STATISTICS}); err != nil {
		t.Fatal(err)
	}
	stats, err := c.ReadPacket()
	if err != nil || !bytes.HasPrefix(stats, []byte("Uptime")) {
		t.Fatalf("COM_STATISTICS: %q %v", stats, err)
	}
	// COM_STMT_* through go-mysql's binary protocol, with a cursor-less
	// prepared statement, parameters and a close.
	stmt, err := c.Prepare("SELECT ? + 1, ?")
	if err != nil {
		t.Fatal(err)
	}
	r, err := stmt.Execute(41, "x")
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := r.GetInt(0, 0); v != 42 {
		t.Fatalf("prepared result %d", v)
	}
	if err := stmt.Close(); err != nil {
		t.Fatal(err)
	}
	// COM_RESET_CONNECTION clears session variables.
	if _, err := c.Execute("SET @v = 7"); err != nil {
		t.Fatal(err)
	}
	c.ResetSequence()
	if err := c.WritePacket([]byte{0, 0, 0, 0, mysqlconst.COM_RESET_CONNECTION}); err != nil {
		t.Fatal(err)
	}
	if pkt, err := c.ReadPacket(); err != nil || pkt[0] != mysqlconst.OK_HEADER {
		t.Fatalf("COM_RESET_CONNECTION: %v %v", pkt, err)
	}
	r, err = c.Execute("SELECT @v IS NULL")
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := r.GetInt(0, 0); v != 1 {
		t.Fatal("user variable survived COM_RESET_CONNECTION")
	}
	// The reset dropped the server's statements: the same text prepared
	// again is prepared anew, not taken from what the connection had.
	stmt, err = c.Prepare("SELECT ? + 1, ?")
	if err != nil {
		t.Fatal(err)
	}
	if r, err = stmt.Execute(1, "y"); err != nil {
		t.Fatalf("a statement prepared after COM_RESET_CONNECTION: %v", err)
	}
	if v, _ := r.GetInt(0, 0); v != 2 {
		t.Fatalf("prepared result after the reset %d", v)
	}
}

// recordingConn keeps the first bytes a client reads: the server handshake.
type recordingConn struct {
	net.Conn
	first []byte
}

func (r *recordingConn) Read(b []byte) (int, error) {
	n, err := r.Conn.Read(b)
	if len(r.first) < 256 {
		r.first = append(r.first, b[:n]...)
	}
	return n, err
}

// scramble extracts the 20-byte scramble from the recorded handshake.
func (r *recordingConn) scramble() []byte {
	p := r.first[4:]
	i := bytes.IndexByte(p[1:], 0) + 2 // after the version string
	part1 := p[i+4 : i+12]
	part2 := p[i+12+1+2+1+2+2+1+10:][:12]
	return append(append([]byte{}, part1...), part2...)
}

// changeUserPacket builds COM_CHANGE_USER with a native password reply to
// scramble, as a client library does.
func changeUserPacket(user, password string, scramble []byte, db string) []byte {
	var auth []byte
	if password != "" {
		s1 := sha1.Sum([]byte(password))
		s2 := sha1.Sum(s1[:])
		h := sha1.New()
		h.Write(scramble)
		h.Write(s2[:])
		auth = mysqlconst.Xor(h.Sum(nil), s1[:])
	}
	b := []byte{0, 0, 0, 0, mysqlconst.COM_CHANGE_USER}
	b = append(b, user...)
	b = append(b, 0, byte(len(auth)))
	b = append(b, auth...)
	b = append(b, db...)
	b = append(b, 0)
	b = binary.LittleEndian.AppendUint16(b, 45)
	b = append(b, mysqlconst.AUTH_NATIVE_PASSWORD...)
	return append(b, 0)
}

func TestChangeUser(t *testing.T) {
	s := startSluice(t, proxy.Config{})
	rec := &recordingConn{}
	dialer := func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		rec.Conn = conn
		return rec, err
	}
	c, err := gomysql.ConnectWithDialer(context.Background(), "tcp", s.addr, "app", "apppass", "", dialer)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	scramble := rec.scramble()
	if _, err := c.Execute("SET @mark = 1"); err != nil {
		t.Fatal(err)
	}
	c.ResetSequence()
	if err := c.WritePacket(changeUserPacket("sbtest", "sbtest", scramble, "sbtest")); err != nil {
		t.Fatal(err)
	}
	pkt, err := c.ReadPacket()
	if err != nil || pkt[0] != mysqlconst.OK_HEADER {
		t.Fatalf("COM_CHANGE_USER: %v %v", pkt, err)
	}
	r, err := c.Execute("SELECT CURRENT_USER(), DATABASE(), @mark IS NULL")
	if err != nil {
		t.Fatal(err)
	}
	user, _ := r.GetString(0, 0)
	db, _ := r.GetString(0, 1)
	cleared, _ := r.GetInt(0, 2)
	if user != "sbtest@%" || db != "sbtest" || cleared != 1 {
		t.Fatalf("after change user: user %q db %q cleared %d", user, db, cleared)
	}
	// A wrong password is refused and the connection does not go on as anyone.
	c.ResetSequence()
	if err := c.WritePacket(changeUserPacket("app", "wrong", scramble, "")); err != nil {
		t.Fatal(err)
	}
	pkt, err = c.ReadPacket()
	if err != nil || pkt[0] != mysqlconst.ERR_HEADER || binary.LittleEndian.Uint16(pkt[1:]) != 1045 {
		t.Fatalf("change user with a bad password: %v %v", pkt, err)
	}
	if _, err := c.Execute("SELECT 1"); err == nil {
		t.Fatal("connection still usable after a failed COM_CHANGE_USER")
	}
}

func TestBackendKilledMidSession(t *testing.T) {
	s := startSluice(t, proxy.Config{})
	db := s.open(t, "app", "apppass", "")
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var backendID int64
	if err := conn.QueryRowContext(context.Background(), "SELECT CONNECTION_ID()").Scan(&backendID); err != nil {
		t.Fatal(err)
	}
	if err := topo.Primary.Exec(context.Background(), fmt.Sprintf("KILL CONNECTION %d", backendID)); err != nil {
		t.Fatal(err)
	}
	// The client gets an error, not a hang.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var one int
	err = conn.QueryRowContext(ctx, "SELECT 1").Scan(&one)
	if err == nil {
		t.Fatal("query on a killed backend connection succeeded")
	}
	if ctx.Err() != nil {
		t.Fatal("query on a killed backend connection hung")
	}
	// The proxy goes on serving.
	other := s.open(t, "app", "apppass", "")
	if err := other.QueryRow("SELECT 1").Scan(&one); err != nil {
		t.Fatalf("proxy after a backend failure: %v", err)
	}
}

func TestBackendKilledMidResult(t *testing.T) {
	s := startSluice(t, proxy.Config{})
	db := s.open(t, "app", "apppass", "app")
	db.SetMaxOpenConns(1)
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var backendID int64
	if err := conn.QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&backendID); err != nil {
		t.Fatal(err)
	}
	// A result far larger than the socket buffers, read slowly.
	rows, err := conn.QueryContext(ctx, "SELECT REPEAT('x', 1000) FROM seq_1_to_1000000")
	if err != nil {
		t.Fatal(err)
	}
	rows.Next()
	if err := topo.Primary.Exec(ctx, fmt.Sprintf("KILL CONNECTION %d", backendID)); err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		n++
	}
	if rows.Err() == nil {
		t.Fatalf("read %d rows of a killed query without an error", n)
	}
	rows.Close()
	lab.WaitFor(t, "the broken session to end", 10*time.Second, func() bool { return s.srv.Sessions() <= 1 })
}

func TestBadInputDoesNotHurtOthers(t *testing.T) {
	s := startSluice(t, proxy.Config{MaxAllowedPacket: 1 << 20})
	good := s.open(t, "app", "apppass", "app")
	good.SetMaxOpenConns(1)
	if err := good.Ping(); err != nil {
		t.Fatal(err)
	}
	inputs := map[string][]byte{
		"garbage":          bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 64),
		"truncated":        {0x40, 0, 0, 1, 0x85, 0xa6},
		"empty packet":     {0, 0, 0, 1},
		"huge length":      {0xff, 0xff, 0xff, 1, 1, 2, 3},
		"short handshake":  {3, 0, 0, 1, 1, 2, 3},
		"no user nul":      append([]byte{40, 0, 0, 1}, bytes.Repeat([]byte{0xff}, 40)...),
		"auth len overrun": append(append([]byte{37, 0, 0, 1, 0x05, 0xa2, 0x0a, 0, 0, 0, 0, 1, 33}, make([]byte, 23)...), 'u', 0, 200),
	}
	for name, in := range inputs {
		t.Run(name, func(t *testing.T) {
			conn, err := net.DialTimeout("tcp", s.addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			hs := make([]byte, 4096)
			if _, err := conn.Read(hs); err != nil {
				t.Fatal(err)
			}
			conn.Write(in)
			if tc, ok := conn.(*net.TCPConn); ok {
				tc.CloseWrite()
			}
			// The proxy answers with an error or closes; it never hangs.
			buf := make([]byte, 4096)
			for {
				if _, err := conn.Read(buf); err != nil {
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						t.Fatal("proxy hung on bad input")
					}
					break
				}
			}
		})
	}
	// A client that disconnects in the middle of a large result.
	rec := &recordingConn{}
	dialer := func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		rec.Conn = conn
		return rec, err
	}
	c, err := gomysql.ConnectWithDialer(context.Background(), "tcp", s.addr, "app", "apppass", "app", dialer)
	if err != nil {
		t.Fatal(err)
	}
	c.ResetSequence()
	if err := c.WritePacket(append([]byte{0, 0, 0, 0, mysqlconst.COM_QUERY}, "SELECT REPEAT('y', 1000) FROM seq_1_to_200000"...)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReadPacket(); err != nil {
		t.Fatal(err)
	}
	rec.Conn.Close()
	var one int
	if err := good.QueryRow("SELECT 1").Scan(&one); err != nil {
		t.Fatalf("other session after bad input: %v", err)
	}
	lab.WaitFor(t, "bad sessions to end", 10*time.Second, func() bool { return s.srv.Sessions() == 1 })
}

func TestMaxConnections(t *testing.T) {
	s := startSluice(t, proxy.Config{MaxConnections: 3})
	var dbs []*sql.DB
	for range 3 {
		db := s.open(t, "app", "apppass", "")
		db.SetMaxOpenConns(1)
		if err := db.Ping(); err != nil {
			t.Fatal(err)
		}
		dbs = append(dbs, db)
	}
	extra := s.open(t, "app", "apppass", "")
	if err := extra.Ping(); sqlErrCode(err) != 1040 {
		t.Fatalf("fourth connection: %v, want 1040", err)
	}
	dbs[0].Close()
	lab.WaitFor(t, "a slot to free", 10*time.Second, func() bool { return s.srv.Sessions() < 3 })
	if err := extra.Ping(); err != nil {
		t.Fatalf("after a session ended: %v", err)
	}
}

func TestManySessionsConcurrently(t *testing.T) {
	s := startSluice(t, proxy.Config{})
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for i := range 32 {
		wg.Go(func() {
			db, err := sql.Open("mysql", s.dsn("app", "apppass", "", nil))
			if err != nil {
				errs <- err
				return
			}
			defer db.Close()
			for j := range 50 {
				var got int
				if err := db.QueryRow("SELECT ? * 2", i*1000+j).Scan(&got); err != nil {
					errs <- err
					return
				}
				if got != (i*1000+j)*2 {
					errs <- fmt.Errorf("session %d got %d", i, got)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
