// @ts-check
// The page's elements by id. Typed loosely: the markup is index.html's, and
// what the checked modules hold to types is the data (vitrine.d.ts).

/** @type {(id: string) => any} */
export const $ = (id) => document.getElementById(id);

/**
 * The page's first element that matches `selector`, loosely typed too.
 * @type {(selector: string) => any}
 */
export const one = (selector) => document.querySelector(selector);
