-- Golden cases of whole SQL aggregate jobs (sandbox.run.execution.JobService), one per block.
--
-- Each block runs through the real path: grants gate, admission, evidence rewrite,
-- an isolated worker process, the output check and the release of a signed product.
--
-- A block starts with "-- case: <what it shows>", may name grant tweaks:
--   "-- grant: min,max"            extra aggregates granted (min, max, median, ...)
--   "-- grant: expressions"        aggregates over expressions granted
--   "-- disclosure: NAME=VALUE"    stricter disclosure parameters in the grant
-- and ends with the SQL, then ";;" and the expected outcome:
--   released                       released, every cell passed
--   suppressed RULE[,RULE]         released with suppressions; each RULE fired
--   review RULE                    withheld, held for an output checker; RULE fired
--   withheld                       withheld: every cell suppressed, nothing releasable
--   refused RULE                   refused at admission or by the grants gate
--   failed CODE                    the run failed (JobFailed code)
--
-- Datasets: pums (pums_1000_pid.csv, entity pid), charities (charities.parquet,
-- entity charity) and private (pums again, registered but granted to no one).
-- The test platform caps output at 100 rows (sandbox.toml: [job] max_output_rows).

-- case: released: COUNT by a dimension, every group large
SELECT sex, COUNT(*) AS n FROM pums GROUP BY sex ;; released
-- case: released: COUNT, SUM and AVG by a dimension, ordered
SELECT married, COUNT(*) AS n, SUM(income) AS total, AVG(income) AS mean
FROM pums GROUP BY married ORDER BY married ;; released
-- case: released: COUNT(DISTINCT) of the entity key
SELECT COUNT(DISTINCT pid) AS people FROM pums ;; released
-- case: refused: HAVING (a filter on an aggregate's value is an oracle, issue 17)
SELECT sex, COUNT(*) AS n FROM pums GROUP BY sex HAVING COUNT(*) > 100 ;; refused aggregate_filter
-- case: released: self-join on the entity key
SELECT a.sex, COUNT(*) AS n FROM pums AS a JOIN pums AS b ON a.pid = b.pid GROUP BY a.sex ;; released
-- case: released: AVG of charities' income by year (NULL incomes noted, not suppressed)
SELECT year, AVG(inc_total) AS mean_income FROM charities GROUP BY year ;; released
-- case: released: distinct charities per year
SELECT year, COUNT(DISTINCT charity) AS charities FROM charities GROUP BY year ;; released

-- case: threshold: small education groups suppressed
SELECT sex, educ, COUNT(*) AS n, SUM(income) AS total FROM pums GROUP BY sex, educ ;; suppressed threshold
-- case: threshold: a quasi-identifier generalised to decades, the oldest decade is small
SELECT floor(age / 10) * 10 AS decade, COUNT(*) AS n FROM pums GROUP BY decade ;; suppressed threshold
-- case: threshold: charities' income by year and grant type, small grant types suppressed
SELECT year, grant_type, SUM(inc_total) AS income FROM charities GROUP BY year, grant_type ;; suppressed threshold
-- case: threshold: a stricter min_entities in the grant suppresses more
-- disclosure: min_entities=20
SELECT educ, COUNT(*) AS n FROM pums GROUP BY educ ;; suppressed threshold

-- case: dominance: grants given in 2015 are dominated by two charities
SELECT year, SUM(grants_given) AS given FROM charities GROUP BY year ;; suppressed dominance
-- case: dominance and p%: grants given by year and grant type
SELECT year, grant_type, SUM(grants_given) AS given FROM charities
GROUP BY year, grant_type ;; suppressed threshold,dominance,p_ratio
-- case: dominance and p% on a PUMS margin of a ROLLUP
SELECT race, COUNT(*) AS n, SUM(income) AS s FROM pums GROUP BY ROLLUP(race) ;; suppressed threshold,dominance,p_ratio

-- case: ROLLUP: a small grant type and its complement among the others
SELECT grant_type, COUNT(*) AS n FROM charities GROUP BY ROLLUP(grant_type) ;; suppressed threshold,complementary
-- case: ROLLUP over two keys: complementary suppression inside each status
SELECT status, grant_type, COUNT(*) AS n FROM charities
GROUP BY ROLLUP(status, grant_type) ;; suppressed threshold,complementary
-- case: CUBE: complementary suppression across both margins
SELECT grant_type, status, COUNT(*) AS n FROM charities
GROUP BY CUBE(grant_type, status) ;; suppressed threshold,complementary

-- case: 10-5 rounding: every count released rounded to a multiple of 5
-- disclosure: mitigation=round_10_5
SELECT educ, COUNT(*) AS n FROM pums GROUP BY educ ;; released
-- case: 10-5 rounding with small cells suppressed
-- disclosure: mitigation=round_10_5
SELECT sex, educ, COUNT(*) AS n FROM pums GROUP BY sex, educ ;; suppressed threshold

-- case: table mode: MIN and MAX return one member's value, refused even under the min,max grant
-- grant: min,max
SELECT sex, MIN(income) AS lo, MAX(income) AS hi FROM pums GROUP BY sex ;; refused table_mode_aggregate
-- case: table mode: an aggregate over an expression, refused even under the expressions grant
-- grant: expressions
SELECT sex, SUM(income / 1000) AS thousands FROM pums GROUP BY sex ;; refused table_mode_expression
-- case: table mode: a filter inside COUNT is a question of the query's own making
-- grant: expressions
SELECT sex, COUNT(CASE WHEN age > 200 THEN 1 END) AS very_old FROM pums GROUP BY sex ;; refused table_mode_expression

-- case: negative: charities' balances include deficits, so a person reviews
SELECT year, SUM(balance) AS balance FROM charities GROUP BY year ;; review negative
-- case: negative: activity income with a few negative entries
SELECT year, SUM(inc_activity) AS activity FROM charities GROUP BY year ;; review negative
-- case: negative next to a dominated cell: held for review, not released
SELECT year, status, SUM(inc_other) AS other FROM charities GROUP BY year, status ;; review negative

-- case: withheld: every cell of the oldest people's education is too small
SELECT educ, COUNT(*) AS n FROM pums WHERE age > 85 GROUP BY educ ;; withheld

-- case: failed: more output rows than the platform's cap
SELECT educ, race, sex, married, COUNT(*) AS n FROM pums
GROUP BY educ, race, sex, married ;; failed output_rows
-- case: failed: the engine cannot compare a number with text
SELECT COUNT(*) AS n FROM pums AS p JOIN charities AS c ON p.pid = c.charity ;; failed engine_error

-- case: refused: a single column of rows
SELECT age FROM pums ;; refused row_level
-- case: refused: SELECT *
SELECT * FROM pums ;; refused row_level
-- case: refused: singling out a person by identifier
SELECT COUNT(*) AS n FROM pums WHERE pid = '5' ;; refused identifier_literal
-- case: refused: singling out a charity by name
SELECT SUM(inc_total) AS income FROM charities WHERE charity = '4Children' ;; refused identifier_literal
-- case: refused: MIN in table mode
SELECT MIN(income) AS lo FROM pums ;; refused table_mode_aggregate
-- case: refused: MEDIAN in table mode, whatever the grant
-- grant: min,max
SELECT sex, MEDIAN(income) AS mid FROM pums GROUP BY sex ;; refused table_mode_aggregate
-- case: refused: COPY a table to a file
COPY pums TO '/tmp/leak.csv' ;; refused statement
-- case: refused: read_csv of a host file
SELECT COUNT(*) AS n FROM read_csv('/etc/passwd') ;; refused table_function
-- case: refused: UNION of two aggregates
SELECT COUNT(*) AS n FROM pums WHERE sex = 1
UNION ALL SELECT COUNT(*) AS n FROM pums WHERE sex = 2 ;; refused single_select
-- case: refused: a CTE hiding a row-level select
WITH t AS (SELECT pid, income FROM pums) SELECT COUNT(*) AS n FROM t ;; refused single_select
-- case: refused: a registered dataset without a grant
SELECT COUNT(*) AS n FROM private ;; refused not_granted
-- case: refused: a table that does not exist
SELECT COUNT(*) AS n FROM pumz ;; refused unknown_table
-- case: refused: a raw quasi-identifier as a group key
SELECT sex, age, COUNT(*) AS n FROM pums GROUP BY sex, age ;; refused quasi_generalisation
-- case: refused: grouping by the identifier
SELECT pid, COUNT(*) AS n FROM pums GROUP BY pid ;; refused identifier_use
-- case: refused: a measure as a group key
SELECT sex, income FROM pums GROUP BY sex, income ;; refused measure_outside_aggregate
-- case: refused: LIMIT picks single rows
SELECT sex, COUNT(*) AS n FROM pums GROUP BY sex LIMIT 1 ;; refused limit
-- case: refused: a window function
SELECT sex, SUM(income) OVER () AS s FROM pums ;; refused window
-- case: refused: an aggregate over an expression in table mode
SELECT sex, SUM(income * 2) AS s FROM pums GROUP BY sex ;; refused table_mode_expression
-- case: refused: not SQL
SELEKT everything FROM pums ;; refused parse_error
