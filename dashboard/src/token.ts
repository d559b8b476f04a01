// The API token reaches the dashboard in the URL fragment (`allele ui` opens `/#token=...`; a fragment is
// never sent to the server). It is moved to sessionStorage (this tab only) and taken out of the address bar
// so that it is not bookmarked, shared in a screenshot of the URL, or left in the history.

const KEY = "allele.token";

export function takeToken(): string | null {
  const hash = window.location.hash.replace(/^#/, "");
  const params = new URLSearchParams(hash);
  const fromUrl = params.get("token");
  if (fromUrl) {
    sessionStorage.setItem(KEY, fromUrl.trim());
    params.delete("token");
    const rest = params.toString();
    const clean = window.location.pathname + window.location.search + (rest ? `#${rest}` : "");
    window.history.replaceState(null, "", clean);
  }
  const stored = sessionStorage.getItem(KEY);
  return stored && stored.length > 0 ? stored : null;
}

export function saveToken(token: string): void {
  sessionStorage.setItem(KEY, token.trim());
}

export function forgetToken(): void {
  sessionStorage.removeItem(KEY);
}
