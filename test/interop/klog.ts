/** Reads the requests an upstream simulator logged with `--log-http` (klog text: headers block, then ` > body="..."`). */

export interface LoggedRequest {
  method: string;
  uri: string;
  headers: Record<string, string>;
  body: unknown;
}

export function loggedRequests(output: string): LoggedRequest[] {
  const out: LoggedRequest[] = [];
  const lines = output.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const m = /"HTTP request" method="([A-Z]+)" requestURI="([^"]*)"/.exec(lines[i]);
    if (!m) continue;
    const headers: Record<string, string> = {};
    let body: unknown;
    for (i = i + 1; i < lines.length; i++) {
      const line = lines[i];
      const h = /^\t([^:]+): (.*)$/.exec(line);
      if (h) {
        headers[h[1].toLowerCase()] = h[2]!;
        continue;
      }
      const b = /^ > body=(".*")$/.exec(line);
      if (b) {
        // klog quotes with Go's strconv.Quote; for JSON bodies that is a valid JSON string literal.
        const text = JSON.parse(b[1]) as string;
        try {
          body = JSON.parse(text);
        } catch {
          body = text;
        }
      }
      break;
    }
    out.push({ method: m[1], uri: m[2], headers, body });
  }
  return out;
}
