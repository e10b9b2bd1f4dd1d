// Lint rules for the sidebar's TypeScript (run by `jlpm lint`, and by tests/test_tooling.py in CI).
// Formatting is prettier's job (.prettierrc): eslint-config-prettier turns off the rules that overlap.
import js from '@eslint/js';
import prettier from 'eslint-config-prettier';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['lib/', 'lib-test/', 'node_modules/', '.yarn/', 'scripts/', 'style/', '../nbserve/labextension/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  prettier,
  {
    files: ['src/**/*.ts', 'test/**/*.ts'],
    rules: {
      '@typescript-eslint/no-explicit-any': 'off', // JSON answers are checked by shape where they are read
      '@typescript-eslint/no-namespace': 'off', // JupyterLab's CommandIDs convention
      '@typescript-eslint/no-unused-vars': ['error', { args: 'none' }],
      eqeqeq: 'error',
      curly: 'error',
      'prefer-const': 'error'
    }
  }
);
