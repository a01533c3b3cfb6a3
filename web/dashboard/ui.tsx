import { useState } from 'preact/hooks';
import { copyText } from '../common';

/** Pieces the dashboard's pages share. */

export function navigate(path: string): void {
  history.pushState(null, '', path);
  dispatchEvent(new PopStateEvent('popstate'));
}

export function Link(props: { href: string; class?: string; children: any }) {
  return (
    <a
      href={props.href}
      class={props.class}
      onClick={(e) => {
        if (e.button !== 0 || e.metaKey || e.ctrlKey) return;
        e.preventDefault();
        navigate(props.href);
      }}
    >
      {props.children}
    </a>
  );
}

export function ErrorLine(props: { error: string | undefined }) {
  return props.error ? (
    <p class="error" role="alert">
      {props.error}
    </p>
  ) : null;
}

/** A secret shown once: the value, a copy button and the warning. */
export function ShownOnce(props: { label: string; value: string; testid: string; onDone?: () => void }) {
  const [copied, setCopied] = useState<boolean | undefined>(undefined);
  return (
    <div class="notice" data-testid={`${props.testid}-panel`}>
      <b>{props.label}</b>
      <code class="secret" data-testid={props.testid}>
        {props.value}
      </code>
      <div class="row">
        <button type="button" onClick={async () => setCopied(await copyText(props.value))}>
          Copy
        </button>
        {copied === true && <span class="muted">Copied.</span>}
        {copied === false && <span class="muted">Copying is not allowed here: select the text and copy it.</span>}
        <span class="grow" />
        {props.onDone && (
          <button type="button" onClick={props.onDone}>
            I have stored it
          </button>
        )}
      </div>
      <p class="small">This is the only time it is shown. Store it now; the server keeps only its digest.</p>
    </div>
  );
}

