-- Golden cases of SQL admission (policies/admission.py), one per block.
--
-- A block starts with "-- case: <what it shows>", may name scope tweaks with
-- "-- scope: grant min,max" (extra aggregates), "-- scope: grant expressions"
-- (aggregates over expressions), "-- scope: dp mode" (the agreement's DP mode:
-- table mode's rules do not apply) or "-- scope: columns pums=sex,income" (granted
-- columns), and ends with the SQL, then ";;" and the verdict: "admitted" or
-- "refused <rule>". Tables: pums (entity pid), charities (entity charity),
-- persons and payments (entity pid, synthetic resident IDs).
-- Admitted cases also run in DuckDB, with and without the evidence rewrite.

-- case: statement: COPY ... TO
COPY pums TO 'out.csv' ;; refused statement
-- case: statement: ATTACH a database file
ATTACH 'other.db' AS o ;; refused statement
-- case: statement: PRAGMA
PRAGMA table_info('pums') ;; refused statement
-- case: statement: SET a setting
SET enable_external_access = true ;; refused statement
-- case: statement: INSTALL an extension
INSTALL httpfs ;; refused statement
-- case: statement: LOAD an extension
LOAD httpfs ;; refused statement
-- case: statement: CREATE TABLE AS
CREATE TABLE leak AS SELECT * FROM pums ;; refused statement
-- case: statement: INSERT
INSERT INTO pums VALUES (1, 2, 3, 4, 5.0, 6, 7) ;; refused statement
-- case: statement: DELETE
DELETE FROM pums ;; refused statement
-- case: statement: two statements separated by ';'
SELECT COUNT(*) FROM pums; SELECT pid, income FROM pums ;; refused statement
-- case: parse error: not SQL
SELEKT everything FROM pums ;; refused parse_error
-- case: table function read_csv in FROM
SELECT COUNT(*) FROM read_csv('/etc/passwd') ;; refused table_function
-- case: table function read_parquet in FROM
SELECT COUNT(*) FROM read_parquet('../elsewhere/charities.parquet') ;; refused table_function
-- case: table function glob in FROM
SELECT COUNT(*) FROM glob('/srv/*') ;; refused table_function
-- case: file path as a table name
SELECT COUNT(*) FROM '../elsewhere/pums_1000_pid.csv' ;; refused table_function
-- case: unknown table with did-you-mean
SELECT COUNT(*) FROM pumz ;; refused unknown_table
-- case: schema-qualified table outside the scope
SELECT COUNT(*) FROM information_schema.tables ;; refused unknown_table
-- case: UNION of two aggregates
SELECT COUNT(*) FROM pums WHERE sex = 1 UNION ALL SELECT COUNT(*) FROM pums WHERE sex = 0 ;; refused single_select
-- case: EXCEPT
SELECT sex FROM pums EXCEPT SELECT sex FROM pums WHERE age > 90 ;; refused single_select
-- case: CTE wrapping a row-level select
WITH t AS (SELECT pid, income FROM pums) SELECT COUNT(*) FROM t ;; refused single_select
-- case: subquery in FROM
SELECT COUNT(*) FROM (SELECT * FROM pums) AS t ;; refused single_select
-- case: subquery in WHERE that aggregates: a filter on an aggregate's value
SELECT COUNT(*) FROM pums WHERE income > (SELECT AVG(income) FROM pums) ;; refused aggregate_filter
-- case: subquery in WHERE without an aggregate
SELECT COUNT(*) FROM pums WHERE sex IN (SELECT sex FROM pums) ;; refused single_select
-- case: scalar subquery in SELECT
SELECT sex, (SELECT MAX(income) FROM pums) AS m FROM pums GROUP BY sex ;; refused aggregate_filter
-- case: window function
SELECT sex, SUM(income) OVER (PARTITION BY sex) AS s FROM pums ;; refused window
-- case: QUALIFY
SELECT sex, COUNT(*) AS n FROM pums GROUP BY sex QUALIFY n > 1 ;; refused aggregate_filter
-- case: the top earner: ORDER BY income DESC LIMIT 1
SELECT pid, income FROM pums ORDER BY income DESC LIMIT 1 ;; refused limit
-- case: LIMIT on an aggregate
SELECT sex, COUNT(*) FROM pums GROUP BY sex LIMIT 1 ;; refused limit
-- case: OFFSET
SELECT sex, COUNT(*) FROM pums GROUP BY sex OFFSET 1 ;; refused limit
-- case: USING SAMPLE
SELECT COUNT(*) FROM pums USING SAMPLE 10 ;; refused limit
-- case: TABLESAMPLE
SELECT COUNT(*) FROM pums TABLESAMPLE 5 ROWS ;; refused limit
-- case: ORDER BY a column that is not an output
SELECT sex, COUNT(*) AS n FROM pums GROUP BY sex ORDER BY educ ;; refused order_by
-- case: ORDER BY a measure outside an aggregate
SELECT sex, SUM(income) AS total FROM pums GROUP BY sex ORDER BY income DESC ;; refused measure_outside_aggregate
-- case: ORDER BY a group key's alias and a position
SELECT sex AS s, COUNT(*) AS n FROM pums GROUP BY sex ORDER BY s DESC, 1 ;; admitted
-- case: ORDER BY an aggregate would place a suppressed cell by its hidden value
SELECT sex, COUNT(*) AS n FROM pums GROUP BY sex ORDER BY n DESC ;; refused order_by
-- case: ORDER BY an aggregate by position
SELECT sex, SUM(income) AS total FROM pums GROUP BY sex ORDER BY 2 ;; refused order_by
-- case: FILTER clause on an aggregate
SELECT COUNT(*) FILTER (WHERE sex = 1) AS women FROM pums ;; refused aggregate_filter
-- case: row-level select refused
SELECT age FROM pums ;; refused row_level
-- case: SELECT * refused
SELECT * FROM pums ;; refused row_level
-- case: bare dimension next to an aggregate without GROUP BY
SELECT sex, COUNT(*) FROM pums ;; refused row_level
-- case: a column neither grouped nor aggregated
SELECT sex, educ, COUNT(*) FROM pums GROUP BY sex ;; refused row_level
-- case: SELECT DISTINCT over dimensions becomes GROUP BY
SELECT DISTINCT sex, race FROM pums ;; admitted
-- case: SELECT DISTINCT over a quasi-identifier
SELECT DISTINCT age FROM pums ;; refused distinct
-- case: SELECT DISTINCT over an identifier
SELECT DISTINCT pid FROM pums ;; refused distinct
-- case: arg_max returns a member's value
SELECT arg_max(pid, income) FROM pums ;; refused member_aggregate
-- case: string_agg lists members
SELECT sex, string_agg(CAST(income AS VARCHAR), ',') FROM pums GROUP BY sex ;; refused member_aggregate
-- case: list() lists members
SELECT sex, list(income) FROM pums GROUP BY sex ;; refused member_aggregate
-- case: first() returns a member
SELECT sex, first(income) FROM pums GROUP BY sex ;; refused member_aggregate
-- case: mode returns a member
SELECT mode(age) FROM pums ;; refused member_aggregate
-- case: an aggregate not on the allow list
SELECT kurtosis(income) FROM pums ;; refused aggregate_not_allowed
-- case: MIN(income) refused in table mode: one member's value
SELECT sex, MIN(income) AS lowest FROM pums GROUP BY sex ;; refused table_mode_aggregate
-- case: MIN(income) refused in table mode, even with the grant
-- scope: grant min,max
SELECT sex, MIN(income) AS lowest FROM pums GROUP BY sex ;; refused table_mode_aggregate
-- case: MIN(income) without the grant, in the DP mode
-- scope: dp mode
SELECT sex, MIN(income) AS lowest FROM pums GROUP BY sex ;; refused aggregate_not_granted
-- case: MIN(income) admitted with the grant, in the DP mode
-- scope: grant min,max
-- scope: dp mode
SELECT sex, MIN(income) AS lowest, MAX(income) AS highest FROM pums GROUP BY sex ;; admitted
-- case: median needs its own grant
-- scope: grant min,max
-- scope: dp mode
SELECT median(income) FROM pums ;; refused aggregate_not_granted
-- case: quantile and stddev with their grants, in the DP mode
-- scope: grant quantile,stddev,variance,median
-- scope: dp mode
SELECT sex, quantile_cont(income, 0.5) AS q, stddev(income) AS sd, var_pop(income) AS v, median(income) AS med FROM pums GROUP BY sex ;; admitted
-- case: SUM over an expression in table mode
SELECT SUM(income * 2) FROM pums ;; refused table_mode_expression
-- case: SUM over an expression without the grant, in the DP mode
-- scope: dp mode
SELECT SUM(income * 2) FROM pums ;; refused aggregate_expression
-- case: a tracker inside SUM is refused in table mode, even with the grant
-- scope: grant expressions
SELECT sex, SUM(CASE WHEN age = 37 AND educ = 12 THEN income ELSE 0 END) AS s FROM pums GROUP BY sex ;; refused table_mode_expression
-- case: SUM over an expression with the grant (run as SUM(TRY(..)): an overflow is NULL, not a failed job)
-- scope: grant expressions
-- scope: dp mode
SELECT sex, SUM(income * 2 + 1) AS s FROM pums GROUP BY sex ;; admitted
-- case: a group key that could fail on a value (run as TRY(..) in GROUP BY and SELECT)
SELECT educ - 1 AS e, COUNT(*) AS n FROM pums GROUP BY educ - 1 ;; admitted
-- case: the same key in a ROLLUP
SELECT educ * 2 AS e, sex, COUNT(*) AS n FROM pums GROUP BY ROLLUP (educ * 2, sex) ;; admitted
-- case: arithmetic in WHERE (run as WHERE TRY(..): a division by zero drops the row, never fails the job)
SELECT sex, COUNT(*) AS n FROM pums WHERE age // 5 * 5 >= 40 AND educ - 1 > 8 GROUP BY sex ;; admitted
-- case: SUM over an expression with the grant, in the DP mode
-- scope: grant expressions
-- scope: dp mode
SELECT sex, SUM(CASE WHEN married = 1 THEN income ELSE 0 END) AS married_income FROM pums GROUP BY sex ;; admitted
-- case: COUNT(*) is always fine
SELECT COUNT(*) AS n FROM pums ;; admitted
-- case: SUM(DISTINCT ..) refused
SELECT SUM(DISTINCT income) FROM pums ;; refused aggregate_not_allowed
-- case: identifier counted
SELECT sex, COUNT(DISTINCT pid) AS people, COUNT(pid) AS rows_with_pid FROM pums GROUP BY sex ;; admitted
-- case: identifier in output
SELECT pid, COUNT(*) FROM pums GROUP BY pid ;; refused identifier_use
-- case: identifier prefix substr(pid, 1, 6)
SELECT substr(CAST(pid AS VARCHAR), 1, 6) AS area, COUNT(*) FROM pums GROUP BY area ;; refused identifier_use
-- case: CASE WHEN pid = '...' singles out one person
-- scope: grant expressions
SELECT SUM(CASE WHEN pid = 17 THEN income ELSE 0 END) AS x FROM pums ;; refused identifier_literal
-- case: CASE WHEN pid = '...' without the expression grant
SELECT SUM(CASE WHEN pid = 17 THEN income ELSE 0 END) AS x FROM pums ;; refused identifier_literal
-- case: tracker: everyone but one (N vs N-1)
SELECT SUM(income) FROM pums WHERE pid <> 17 ;; refused identifier_literal
-- case: identifier IN a list
SELECT COUNT(*) FROM pums WHERE pid IN (1, 2, 3) ;; refused identifier_literal
-- case: identifier BETWEEN
SELECT COUNT(*) FROM pums WHERE pid BETWEEN 10 AND 11 ;; refused identifier_literal
-- case: identifier inside MAX
-- scope: grant min,max
-- scope: dp mode
SELECT sex, MAX(pid) AS m FROM pums GROUP BY sex ;; refused identifier_use
-- case: HAVING, even with the extra aggregates granted
-- scope: grant min,max
SELECT sex, COUNT(*) FROM pums GROUP BY sex HAVING MAX(pid) = 3 ;; refused aggregate_filter
-- case: identifier in ORDER BY
SELECT sex, COUNT(*) FROM pums GROUP BY sex ORDER BY pid ;; refused identifier_use
-- case: identifier in an expression in WHERE
SELECT COUNT(*) FROM pums WHERE pid % 2 = pid % 3 ;; refused identifier_use
-- case: measure in WHERE
SELECT COUNT(*) FROM pums WHERE income > 100000 ;; refused measure_outside_aggregate
-- case: measure as a group key
SELECT income, COUNT(*) FROM pums GROUP BY income ;; refused measure_outside_aggregate
-- case: income sum by sex admitted
SELECT sex, SUM(income) AS total FROM pums GROUP BY sex ;; admitted
-- case: average income by education and race
SELECT educ, race, AVG(income) AS mean_income, COUNT(*) AS n FROM pums GROUP BY educ, race ;; admitted
-- case: quasi age GROUP BY age refused
SELECT age, COUNT(*) FROM pums GROUP BY age ;; refused quasi_generalisation
-- case: quasi age in ten-year bands admitted
SELECT floor(age / 10) * 10 AS band, COUNT(*) AS n, SUM(income) AS total FROM pums GROUP BY floor(age / 10) * 10 ;; admitted
-- case: quasi age band by alias and integer division
SELECT age // 5 * 5 AS band, COUNT(*) AS n FROM pums GROUP BY band ;; admitted
-- case: quasi age band too narrow
SELECT floor(age / 2) * 2 AS band, COUNT(*) FROM pums GROUP BY band ;; refused quasi_generalisation
-- case: quasi as a filter in WHERE
SELECT sex, COUNT(*) AS n FROM pums WHERE age BETWEEN 30 AND 39 GROUP BY sex ;; admitted
-- case: quasi in output without GROUP BY generalisation
SELECT sex, age + 0 AS a, COUNT(*) FROM pums GROUP BY sex, age + 0 ;; refused quasi_generalisation
-- case: quasi in HAVING: refused as a filter first
SELECT sex, COUNT(*) FROM pums GROUP BY sex HAVING COUNT(*) > 18 AND age > 1 ;; refused aggregate_filter
-- case: function not on the allow list
SELECT sex, COUNT(*) FROM pums WHERE md5(CAST(sex AS VARCHAR)) = 'x' GROUP BY sex ;; refused function_not_allowed
-- case: reading files through a scalar function
SELECT sex, COUNT(*) FROM pums WHERE read_text('/etc/passwd') IS NOT NULL GROUP BY sex ;; refused function_not_allowed
-- case: allowed scalar functions on dimensions
SELECT CASE WHEN educ >= 13 THEN 'degree' ELSE 'other' END AS level, COUNT(*) AS n FROM pums WHERE coalesce(married, 0) = 1 GROUP BY level ;; admitted
-- case: aggregate in WHERE
SELECT COUNT(*) FROM pums WHERE COUNT(*) > 1 ;; refused aggregate_context
-- case: column outside the granted columns
-- scope: columns pums=sex,income,pid
SELECT educ, COUNT(*) FROM pums GROUP BY educ ;; refused column_not_granted
-- case: granted columns only
-- scope: columns pums=sex,income,pid
SELECT sex, SUM(income) AS total FROM pums GROUP BY sex ;; admitted
-- case: unknown column with did-you-mean
SELECT sexx, COUNT(*) FROM pums GROUP BY sexx ;; refused unknown_column
-- case: output names may not use the evidence prefix
SELECT COUNT(*) AS __n FROM pums ;; refused output_name
-- case: two aggregates combined in one output column
SELECT SUM(income) / COUNT(*) AS ratio FROM pums ;; refused output_expression
-- case: a rounded average is one aggregate
SELECT sex, round(AVG(income), 0) AS mean_income FROM pums GROUP BY sex ;; admitted
-- case: GROUP BY key missing from the output
SELECT COUNT(*) AS n FROM pums GROUP BY sex ;; refused group_key_not_in_output
-- case: ROLLUP admitted with margins
SELECT sex, married, COUNT(*) AS n, SUM(income) AS total FROM pums GROUP BY ROLLUP (sex, married) ;; admitted
-- case: CUBE admitted
SELECT sex, race, AVG(income) AS mean_income FROM pums GROUP BY CUBE (sex, race) ;; admitted
-- case: GROUPING SETS admitted
SELECT sex, educ, COUNT(*) AS n FROM pums GROUP BY GROUPING SETS ((sex), (educ), ()) ;; admitted
-- case: GROUP BY ALL
SELECT race, COUNT(*) AS n FROM pums GROUP BY ALL ;; admitted
-- case: GROUP BY ALL and HAVING over an aggregate
SELECT race, COUNT(*) AS n FROM pums GROUP BY ALL HAVING COUNT(*) >= 10 ;; refused aggregate_filter
-- case: the binary-search probe: HAVING SUM over a quasi-identifier filter
SELECT sex, SUM(income) AS s FROM pums WHERE age = 37 AND educ = 9 GROUP BY sex HAVING SUM(income) > 50000 ;; refused aggregate_filter
-- case: a CTE that aggregates, joined back and filtered on its value
WITH t AS (SELECT sex, SUM(income) AS s FROM pums WHERE age = 37 GROUP BY sex) SELECT pums.sex, COUNT(*) AS n FROM pums JOIN t ON pums.sex = t.sex WHERE t.s > 50000 GROUP BY pums.sex ;; refused aggregate_filter
-- case: EXISTS over an aggregate
SELECT sex, COUNT(*) AS n FROM pums WHERE EXISTS (SELECT 1 FROM pums WHERE age = 37 HAVING SUM(income) > 50000) GROUP BY sex ;; refused aggregate_filter
-- case: IN over a grouped subquery with HAVING
SELECT sex, COUNT(*) AS n FROM pums WHERE sex IN (SELECT sex FROM pums GROUP BY sex HAVING SUM(income) > 50000) GROUP BY sex ;; refused aggregate_filter
-- case: a window over an aggregate ranks hidden values
SELECT sex, RANK() OVER (ORDER BY SUM(income)) AS r FROM pums GROUP BY sex ;; refused aggregate_filter
-- case: CAST of an aggregate is admitted (as TRY_CAST: a value that does not fit is NULL, never a failed job)
SELECT sex, CAST(SUM(income) AS BIGINT) AS s FROM pums GROUP BY sex ;; admitted
-- case: HAVING over a member aggregate: refused as a filter first
SELECT sex, COUNT(*) FROM pums GROUP BY sex HAVING max(income) > 100 ;; refused aggregate_filter
-- case: global aggregate over charities
SELECT COUNT(*) AS n, SUM(inc_total) AS income, AVG(total_costs) AS costs FROM charities ;; admitted
-- case: charities by year and grant type
SELECT year, grant_type, SUM(inc_donations) AS donations, COUNT(DISTINCT charity) AS charities FROM charities WHERE status = 'successful' GROUP BY year, grant_type ORDER BY year, grant_type ;; admitted
-- case: charity name in output
SELECT charity, SUM(inc_total) FROM charities GROUP BY charity ;; refused identifier_use
-- case: charity row_id tracker
SELECT SUM(inc_total) FROM charities WHERE row_id <> 5 ;; refused identifier_literal
-- case: charity name prefix
SELECT left(charity, 3) AS initial, COUNT(*) FROM charities GROUP BY initial ;; refused identifier_use
-- case: join persons to payments on the resident ID
SELECT p.county, SUM(y.amount) AS paid, COUNT(DISTINCT p.pid) AS people FROM persons p JOIN payments y ON p.pid = y.pid GROUP BY p.county ;; admitted
-- case: LEFT JOIN USING the resident ID
SELECT county, COUNT(*) AS n FROM persons LEFT JOIN payments USING (pid) GROUP BY county ;; admitted
-- case: birth date generalised to the year
SELECT year(birth_date) AS born, COUNT(*) AS n FROM persons GROUP BY born ;; admitted
-- case: birth date truncated to the month
SELECT date_trunc('month', birth_date) AS born, COUNT(*) AS n FROM persons GROUP BY born ;; admitted
-- case: birth date truncated to the day
SELECT date_trunc('day', birth_date) AS born, COUNT(*) AS n FROM persons GROUP BY born ;; refused quasi_generalisation
-- case: resident ID compared with a literal in the join
SELECT COUNT(*) FROM persons p JOIN payments y ON p.pid = y.pid AND p.pid = '110101199003074514' ;; refused identifier_literal
-- case: non-equi join
SELECT COUNT(*) FROM persons p JOIN payments y ON p.pid < y.pid ;; refused join
-- case: CROSS JOIN
SELECT COUNT(*) FROM persons CROSS JOIN payments ;; refused join
-- case: comma join
SELECT COUNT(*) FROM persons, payments ;; refused join
-- case: FULL OUTER JOIN
SELECT COUNT(*) FROM persons FULL OUTER JOIN payments USING (pid) ;; refused join
-- case: join on a measure
SELECT COUNT(*) FROM persons p JOIN payments y ON p.pid = y.pid AND y.amount = y.amount ;; refused measure_outside_aggregate
-- case: postcode-like prefix of a quasi code column
SELECT left(postcode, 3) AS area, COUNT(*) AS n FROM persons GROUP BY area ;; admitted
-- case: prefix too long
SELECT left(postcode, 6) AS area, COUNT(*) FROM persons GROUP BY area ;; refused quasi_generalisation
-- case: self-join on a dimension multiplies rows across subjects
SELECT p1.sex, SUM(p2.income) AS s FROM pums p1 JOIN pums p2 ON p1.sex = p2.sex GROUP BY p1.sex ;; refused join
-- case: self-join on the entity key
SELECT p1.sex, SUM(p2.income) AS s FROM pums p1 JOIN pums p2 ON p1.pid = p2.pid GROUP BY p1.sex ;; admitted
-- case: identifier cast and matched by LIKE
SELECT COUNT(*) FROM pums WHERE CAST(pid AS VARCHAR) LIKE '12%' ;; refused identifier_literal
-- case: identifier probe hidden in HAVING: refused as a filter first
-- scope: grant expressions
SELECT sex, COUNT(*) FROM pums GROUP BY sex HAVING SUM(CASE WHEN pid = 3 THEN 1 ELSE 0 END) > 0 ;; refused aggregate_filter

-- case: IS NULL and IS NOT NULL filters on a dimension are admitted
SELECT sex, COUNT(*) AS n FROM pums WHERE educ IS NOT NULL AND race IS NULL GROUP BY sex ;; admitted
