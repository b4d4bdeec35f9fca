/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/tests'],
  testMatch: ['**/*.test.ts'],
  transform: {
    // Type checking runs once in `npm test` (tsc --noEmit); ts-jest only transpiles here.
    '^.+\\.ts$': ['ts-jest', { diagnostics: false }],
  },
  moduleFileExtensions: ['ts', 'js', 'json'],
  testTimeout: 60000,
  // one fixed fast-check seed unless FC_SEED says otherwise (tests/fast-check-setup.ts)
  setupFiles: ['<rootDir>/tests/fast-check-setup.ts'],
};
