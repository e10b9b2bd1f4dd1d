/** A tiny element builder: the sidebar is plain DOM inside Lumino widgets (no framework needed). */
type Attrs = { [name: string]: string | number | boolean | EventListener | undefined };
type Child = Node | string | null | undefined | false;

export function h(tag: string, attrs: Attrs = {}, ...children: Child[]): HTMLElement {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) {
      continue;
    }
    if (name.startsWith('on') && typeof value === 'function') {
      el.addEventListener(name.slice(2), value);
    } else if (name === 'className') {
      el.className = String(value);
    } else {
      el.setAttribute(name, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

export function append(el: HTMLElement, children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) {
      continue;
    }
    el.appendChild(typeof child === 'string' ? document.createTextNode(child) : child);
  }
}

export function replaceChildren(el: HTMLElement, ...children: Child[]): void {
  while (el.firstChild) {
    el.removeChild(el.firstChild);
  }
  append(el, children);
}

const SVG = 'http://www.w3.org/2000/svg';

/** An SVG element with its attributes (and text): the charts' and the graph drawing's one builder. */
export function svg(
  tag: string,
  attrs: { [k: string]: string | number },
  text?: string
): SVGElement {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) {
    el.setAttribute(k, String(v));
  }
  if (text !== undefined) {
    el.textContent = text;
  }
  return el;
}
